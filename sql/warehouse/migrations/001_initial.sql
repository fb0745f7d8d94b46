-- Migration 1 (DuckDB): the warehouse tables and views that analysts query, as released
-- before migrations existed (this was sql/warehouse/schema.sql). Every statement is
-- idempotent, so on a warehouse created by that release it only records version 1.
-- recommendations is unique on (as_of_date, user_id, rank): publish replaces a whole
-- as_of_date inside one transaction and never appends.

create table if not exists recommendations (
    as_of_date date not null,
    user_id varchar not null,
    rank integer not null,
    item_id varchar not null,
    score double,
    source varchar not null,
    model varchar not null,
    run_id varchar not null,
    generated_at timestamptz not null
);

create table if not exists recommendation_runs (
    run_id varchar not null,
    as_of_date date not null,
    status varchar not null,
    started_at timestamptz not null,
    finished_at timestamptz,
    model varchar,
    params json,
    metrics json,
    stage_seconds json,
    n_users integer,
    n_rows bigint,
    n_fallback_rows bigint,
    published boolean,
    snapshot_id varchar,
    validation_paths json,
    failed_task varchar,
    error varchar
);

create or replace view recommendations_latest as
select *
from recommendations
where as_of_date = (select max(as_of_date) from recommendations);
