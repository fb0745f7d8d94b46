-- The newest succeeded run of $as_of_date with a stored snapshot: what reexport republishes.
select run_id, as_of_date, status, model, snapshot_id, failed_task, error, finished_at
from recommendation_runs
where as_of_date = $as_of_date and status = 'succeeded' and snapshot_id is not null
order by finished_at desc
limit 1
