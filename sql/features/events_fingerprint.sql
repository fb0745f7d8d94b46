-- Returns the count and an order-independent hash of the events before $as_of, which
-- identify the data a snapshot is built from.
select
    count(*) as n_events,
    coalesce(bit_xor(hash(user_id, item_id, event_type, event_ts, value)), 0) as content_hash
from events
where event_ts < $as_of
