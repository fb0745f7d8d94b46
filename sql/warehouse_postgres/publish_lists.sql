-- Inserts the staged lists (staged_lists) as the lists of $as_of_date; run inside the
-- transaction that first deleted that date's rows. COPY kept the lists' order (by user,
-- then rank): no sort needed, the indexes serve readers. because_items arrives as an
-- array literal ({"a","b"}) and is cast to text[].
insert into recommendations (
    as_of_date, user_id, rank, item_id, score, source, model, run_id, generated_at,
    reason, because_items, score_pct
)
select
    cast($as_of_date as date) as as_of_date,
    user_id,
    rank,
    item_id,
    score,
    source,
    cast($model as text) as model,
    cast($run_id as text) as run_id,
    cast($generated_at as timestamptz) as generated_at,
    reason,
    cast(because_items as text[]) as because_items,
    score_pct
from staged_lists
