-- Migration 4 (DuckDB): lists that explain themselves and the items they name.
-- recommendations gains reason (plain words), because_items (the user's items that
-- contributed most, a list of ids) and score_pct (the row's percentile in the user's
-- ranking, 0-1); rows published before keep nulls there. items holds each item's
-- catalogue entry and its figures as of the newest run, upserted with each publish.
-- The view is recreated so that it lists the new columns. The descriptions of every
-- table and column are sql/warehouse/reference.yaml (applied as COMMENT ON by each run).

alter table recommendations add column if not exists reason varchar;

alter table recommendations add column if not exists because_items varchar[];

alter table recommendations add column if not exists score_pct double;

create table if not exists items (
    item_id varchar not null,
    title varchar,
    attributes json,
    first_seen timestamptz,
    last_seen timestamptz,
    n_users bigint,
    popularity double,
    as_of_date date not null,
    run_id varchar not null,
    updated_at timestamptz not null
);

create or replace view recommendations_latest as
select *
from recommendations
where as_of_date = (select max(as_of_date) from recommendations);
