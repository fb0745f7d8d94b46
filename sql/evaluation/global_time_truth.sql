-- Returns the global-time protocol's ground truth: the items each user interacted with at
-- or after $cutoff (and before $as_of) that they had not interacted with before $cutoff,
-- for users with history before $cutoff. Reads split_scope (sql/evaluation/split_scope.sql),
-- the events the split may see.
with history as (
    select distinct user_id, item_id
    from split_scope($as_of)
    where event_ts < $cutoff
),

future_items as (
    select user_id, item_id, min(event_ts) as first_ts
    from split_scope($as_of)
    where event_ts >= $cutoff
    group by user_id, item_id
)

select f.user_id, f.item_id, f.first_ts as last_ts
from future_items as f
semi join (select distinct user_id from history) as h on h.user_id = f.user_id
anti join history as seen on seen.user_id = f.user_id and seen.item_id = f.item_id
