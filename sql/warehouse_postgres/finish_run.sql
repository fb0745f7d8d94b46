-- Records a run's outcome (succeeded or failed) with its figures (PostgreSQL: the JSON
-- columns are jsonb).
update recommendation_runs
set
    status = $status,
    finished_at = $finished_at,
    metrics = coalesce(cast($metrics as jsonb), metrics),
    stage_seconds = coalesce(cast($stage_seconds as jsonb), stage_seconds),
    n_users = coalesce(cast($n_users as integer), n_users),
    n_rows = coalesce(cast($n_rows as bigint), n_rows),
    n_fallback_rows = coalesce(cast($n_fallback_rows as bigint), n_fallback_rows),
    published = coalesce(cast($published as boolean), published),
    snapshot_id = coalesce(cast($snapshot_id as text), snapshot_id),
    validation_paths = coalesce(cast($validation_paths as jsonb), validation_paths),
    failed_task = $failed_task,
    error = $error
where run_id = $run_id
