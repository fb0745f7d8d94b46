-- The A/B bucket (0..99) of every user with a current list, for the experiment $salt:
-- ab_bucket(salt, user_id) = the first 8 hex digits of md5(salt || ':' || user_id) read as
-- an unsigned 32-bit integer, mod 100 (the function/macro of warehouse migration 2; the
-- same in both warehouses and in decayrec.warehouse.ab_bucket). A user keeps the bucket
-- as long as the salt stays; a new salt reshuffles everyone.
-- Returns: user_id, bucket; by user_id (numeric ids in numeric order).
-- Parameters:
--   $salt  the experiment's salt (default: decayrec)
-- Dialects: runs unchanged on DuckDB and PostgreSQL.
with latest_users as (
    select distinct user_id
    from recommendations_latest
)

select
    user_id,
    ab_bucket(cast($salt as varchar), user_id) as bucket
from latest_users
order by length(user_id), user_id
