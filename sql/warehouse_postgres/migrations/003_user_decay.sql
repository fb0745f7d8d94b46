-- Migration 3 (PostgreSQL): user_decay_params, the per-user decay each run used, the same
-- columns as the DuckDB warehouse (sql/warehouse/migrations/003_user_decay.sql).

create table if not exists user_decay_params (
    run_id text not null,
    as_of_date date not null,
    user_id text not null,
    memory double precision not null,
    drift double precision,
    half_life_days double precision
);

create index if not exists user_decay_params_user_idx
on user_decay_params (user_id, as_of_date);
