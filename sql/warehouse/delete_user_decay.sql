-- Deletes the per-user decay parameters recorded for run $run_id (a retried write
-- replaces them).
delete from user_decay_params
where run_id = $run_id
