-- Inserts the staged lists (staged_lists) as the lists of $as_of_date; run inside the
-- transaction that first deleted that date's rows.
insert into recommendations
select
    $as_of_date as as_of_date,
    user_id,
    rank,
    item_id,
    score,
    source,
    $model as model,
    $run_id as run_id,
    $generated_at as generated_at
from staged_lists
order by user_id, rank
