-- Runs recorded as running, with their params (which name the process holding each).
select run_id, cast(params as varchar) as params
from recommendation_runs
where status = 'running'
