-- One run's record: its status, model, snapshot, failing task and message.
select run_id, as_of_date, status, model, snapshot_id, failed_task, error, finished_at
from recommendation_runs
where run_id = $run_id
