-- One user's current list: that user's entries on the newest as-of date, best first.
-- Returns: as_of_date, rank, item_id, score, source, model, run_id; K rows, or none for a
-- user without a list.
-- Parameters:
--   $user_id  the user's id (required)
-- Dialects: runs unchanged on DuckDB and PostgreSQL.
select
    as_of_date,
    rank,
    item_id,
    score,
    source,
    model,
    run_id
from recommendations_latest
where user_id = cast($user_id as varchar)
order by rank
