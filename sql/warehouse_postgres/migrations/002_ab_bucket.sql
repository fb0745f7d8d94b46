-- Migration 2 (PostgreSQL): ab_bucket(salt, user_id), the stable A/B bucket of a user,
-- 0..99: the first 8 hex digits of md5(salt || ':' || user_id) read as an unsigned
-- 32-bit integer, mod 100. Same results as the DuckDB macro of the same name
-- (sql/warehouse/migrations/002_ab_bucket.sql).

create or replace function ab_bucket(salt text, user_id text) returns integer
language sql immutable strict parallel safe
as $$
    select cast(cast(cast('x' || substr(md5(salt || ':' || user_id), 1, 8) as bit(32)) as bigint) % 100 as integer)
$$;
