-- Inserts the staged per-user decay table (staged_user_decay) as the parameters of run
-- $run_id; run inside the transaction that first deleted that run's rows.
insert into user_decay_params
select $run_id as run_id, $as_of_date as as_of_date, user_id, memory, drift, half_life_days
from staged_user_decay
