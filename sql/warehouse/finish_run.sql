-- Records a run's outcome (succeeded or failed) with its figures.
update recommendation_runs
set
    status = $status,
    finished_at = $finished_at,
    metrics = coalesce($metrics, metrics),
    stage_seconds = coalesce($stage_seconds, stage_seconds),
    n_users = coalesce($n_users, n_users),
    n_rows = coalesce($n_rows, n_rows),
    n_fallback_rows = coalesce($n_fallback_rows, n_fallback_rows),
    published = coalesce($published, published),
    snapshot_id = coalesce($snapshot_id, snapshot_id),
    validation_paths = coalesce($validation_paths, validation_paths),
    failed_task = $failed_task,
    error = $error
where run_id = $run_id
