-- Migration 1 (PostgreSQL): the warehouse tables and views that analysts query, the same
-- columns as the DuckDB warehouse (sql/warehouse/migrations/001_initial.sql).
-- The primary key (as_of_date, user_id, rank) serves by-date access and the newest-date
-- lookup of recommendations_latest; recommendations_user_idx serves one user's lists.

create table if not exists recommendations (
    as_of_date date not null,
    user_id text not null,
    rank integer not null,
    item_id text not null,
    score double precision,
    source text not null,
    model text not null,
    run_id text not null,
    generated_at timestamptz not null,
    constraint recommendations_pkey primary key (as_of_date, user_id, rank)
);

create index if not exists recommendations_user_idx
on recommendations (user_id, as_of_date);

create table if not exists recommendation_runs (
    run_id text not null,
    as_of_date date not null,
    status text not null,
    started_at timestamptz not null,
    finished_at timestamptz,
    model text,
    params jsonb,
    metrics jsonb,
    stage_seconds jsonb,
    n_users integer,
    n_rows bigint,
    n_fallback_rows bigint,
    published boolean,
    snapshot_id text,
    validation_paths jsonb,
    failed_task text,
    error text,
    constraint recommendation_runs_pkey primary key (run_id)
);

create index if not exists recommendation_runs_date_idx
on recommendation_runs (as_of_date, started_at);

create or replace view recommendations_latest as
select *
from recommendations
where as_of_date = (select max(as_of_date) from recommendations);
