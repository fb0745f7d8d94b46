-- Returns each item's first and latest event in the lake before $as_of and its number of
-- users: item_id, first_seen, last_seen, n_users. Reads events.
select
    item_id,
    min(event_ts) as first_seen,
    max(event_ts) as last_seen,
    count(distinct user_id) as n_users
from events
where event_ts < $as_of
group by item_id
order by item_id
