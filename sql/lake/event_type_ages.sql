-- Returns one row per event type of the events before $as_of: event_type, n_events, and
-- the ages in days at $as_of of its oldest and newest event (oldest_age_days,
-- newest_age_days). Reads events. For the decay plots: which types the data holds and
-- how far back it reaches.
with before_as_of as (
    select
        event_type,
        event_ts
    from events
    where event_ts < $as_of
)

select
    event_type,
    count(*) as n_events,
    epoch(cast($as_of as timestamptz) - min(event_ts)) / 86400.0 as oldest_age_days,
    epoch(cast($as_of as timestamptz) - max(event_ts)) / 86400.0 as newest_age_days
from before_as_of
group by event_type
order by event_type
