-- Returns how many events the lake holds before $as_of and in all: a run with none before
-- its as-of instant has nothing to recommend from.
select
    count(*) filter (where event_ts < $as_of) as n_before,
    count(*) as n_events
from events
