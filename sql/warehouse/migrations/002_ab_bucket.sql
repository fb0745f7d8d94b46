-- Migration 2 (DuckDB): ab_bucket(salt, user_id), the stable A/B bucket of a user, 0..99:
-- the first 8 hex digits of md5(salt || ':' || user_id) read as an unsigned 32-bit
-- integer, mod 100. The PostgreSQL warehouse defines the same function with the same
-- results (sql/warehouse_postgres/migrations/002_ab_bucket.sql).
-- No index on recommendations here: DuckDB scans its columns with min/max zone maps
-- (lists are written date by date, sorted by user), and an ART index made a 1M-row
-- publish 4 to 10 times slower for lookups that already take milliseconds.

create or replace macro ab_bucket(salt, user_id) as
cast(cast('0x' || substr(md5(salt || ':' || user_id), 1, 8) as ubigint) % 100 as integer);
