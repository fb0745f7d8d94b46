-- Returns the global-time cutoff: the event time that leaves the last $test_fraction of
-- the events of split_events before $as_of (of the types the model uses) at or after it.
select quantile_disc(e.event_ts, 1 - $test_fraction) as cutoff
from split_events as e
join type_params as t on t.event_type = e.event_type
where e.event_ts < $as_of and t.weight > 0
