-- Returns the user-time protocol's training events: every event of split_events before
-- $as_of except those of a (user, item) pair held out in the temp table truth.
-- Reads split_events and truth.
select e.user_id, e.item_id, e.event_type, e.event_ts
from split_events as e
anti join truth as t on t.user_id = e.user_id and t.item_id = e.item_id
where e.event_ts < $as_of
