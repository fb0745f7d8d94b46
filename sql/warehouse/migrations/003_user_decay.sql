-- Migration 3 (DuckDB): user_decay_params, the per-user decay each run used: the user's
-- memory (the factor that stretches the kernel's time axis), their measured drift (null
-- where too little history) and the resulting effective half-life in days.

create table if not exists user_decay_params (
    run_id varchar not null,
    as_of_date date not null,
    user_id varchar not null,
    memory double not null,
    drift double,
    half_life_days double
);
