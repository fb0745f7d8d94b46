-- Tuning history in the lake: every trial of every tune run, and each run's winner
-- (model and decay settings as JSON, and `applied`: the winner beat the settings in force
-- on validation, so the nightly takes it).

create table if not exists tuning_trials (
    tune_id varchar not null,
    trial integer not null,
    stage varchar not null,
    decay json not null,
    l2 double not null,
    metric varchar not null,
    score double,
    seconds double not null,
    recorded_at timestamptz not null
);

alter table tuning_trials add column if not exists model json;

create table if not exists tuning_winners (
    tune_id varchar not null,
    as_of timestamptz not null,
    protocol varchar not null,
    decay json not null,
    l2 double not null,
    metric varchar not null,
    score double,
    baseline_score double,
    n_trials integer not null,
    recorded_at timestamptz not null
);

alter table tuning_winners add column if not exists model json;

alter table tuning_winners add column if not exists applied boolean;
