-- Inserts the staged lists (staged_lists) as the lists of $as_of_date; run inside the
-- transaction that first deleted that date's rows.
insert into recommendations (
    as_of_date, user_id, rank, item_id, score, source, model, run_id, generated_at,
    reason, because_items, score_pct
)
select
    $as_of_date as as_of_date,
    user_id,
    rank,
    item_id,
    score,
    source,
    $model as model,
    $run_id as run_id,
    $generated_at as generated_at,
    reason,
    because_items,
    score_pct
from staged_lists
order by user_id, rank
