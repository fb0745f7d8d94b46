-- Returns one row profiling the raw event time column of a staged batch, so the unit
-- (epoch s / ms / us / ns or ISO-8601) is chosen once per column, not guessed per row.
with raw_times as (
    select trim(event_ts) as event_ts
    from staged_rows
    where batch_id = $batch_id and parse_error is null and nullif(trim(event_ts), '') is not null
)

select
    count(*) as n_values,
    count(try_cast(event_ts as double)) as n_numeric,
    count(try_cast(event_ts as timestamptz)) as n_iso,
    median(abs(try_cast(event_ts as double))) as median_abs_numeric
from raw_times
