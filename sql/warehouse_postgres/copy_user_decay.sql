-- Bulk load of a run's per-user decay parameters: CSV rows streamed over COPY.
copy user_decay_params (run_id, as_of_date, user_id, memory, drift, half_life_days)
from stdin with (format csv)
