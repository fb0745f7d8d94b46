-- Returns the run (run_id, as_of_date) whose lists are live (recommendations_latest): the
-- lists an incremental night carries forward. No rows before the first publish; more than
-- one row only if the live date was written by several runs.
-- Reads recommendations_latest.
select distinct
    run_id,
    as_of_date
from recommendations_latest
order by run_id
limit 2
