-- Every recorded run, newest first, for retention (decayrec.evaluation.retention): its
-- run_id, snapshot_id, started_at, and live: whether its lists are the published ones
-- (recommendations_latest). Reads recommendation_runs and recommendations_latest.
with live_runs as (
    select distinct run_id
    from recommendations_latest
)

select
    runs.run_id,
    runs.snapshot_id,
    runs.started_at,
    runs.run_id in (select live_runs.run_id from live_runs) as live
from recommendation_runs as runs
order by runs.started_at desc, runs.run_id desc
