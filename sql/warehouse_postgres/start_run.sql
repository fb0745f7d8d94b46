-- Records a run as started (PostgreSQL: params is jsonb).
insert into recommendation_runs (run_id, as_of_date, status, started_at, model, params)
values ($run_id, $as_of_date, 'running', $started_at, $model, cast($params as jsonb))
