-- Returns the global-time cutoff: the time of the ceil($test_fraction * n)-th latest of the
-- n events of split_events before $as_of (of the types the model uses), so that the last
-- $test_fraction of them are at or after it (null when there is no event).
-- Reads split_scope (sql/evaluation/split_scope.sql).
with scoped_events as (
    select
        event_ts,
        row_number() over (order by event_ts desc) as recency_rank,
        count(*) over () as n_events
    from split_scope($as_of)
)

select max(event_ts) as cutoff
from scoped_events
where recency_rank = greatest(1, ceil($test_fraction * n_events))
