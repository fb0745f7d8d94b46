-- Migration 4 (PostgreSQL): lists that explain themselves and the items they name, the
-- same columns as the DuckDB warehouse (sql/warehouse/migrations/004_explained_lists.sql):
-- recommendations gains reason, because_items (text[]) and score_pct; items holds each
-- item's catalogue entry and its figures as of the newest run (primary key item_id).
-- The view is recreated so that it lists the new columns (PostgreSQL fixes a view's
-- columns when it is created).

alter table recommendations add column if not exists reason text;

alter table recommendations add column if not exists because_items text[];

alter table recommendations add column if not exists score_pct double precision;

create table if not exists items (
    item_id text not null,
    title text,
    attributes jsonb,
    first_seen timestamptz,
    last_seen timestamptz,
    n_users bigint,
    popularity double precision,
    as_of_date date not null,
    run_id text not null,
    updated_at timestamptz not null,
    constraint items_pkey primary key (item_id)
);

create or replace view recommendations_latest as
select *
from recommendations
where as_of_date = (select max(as_of_date) from recommendations);
