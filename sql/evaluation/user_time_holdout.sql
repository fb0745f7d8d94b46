-- Returns the user-time protocol's ground truth: for each user with at least
-- $min_user_events events before $as_of (of the types the model uses), the last
-- $holdout_items distinct items by time (ties: larger item id first). Reads split_scope
-- (sql/evaluation/split_scope.sql), the events the split may see.
with scoped_events as (
    from split_scope($as_of)
),

active_users as (
    select user_id
    from scoped_events
    group by user_id
    having count(*) >= $min_user_events
),

last_touch as (
    select s.user_id, s.item_id, max(s.event_ts) as last_ts
    from scoped_events as s
    semi join active_users as a on a.user_id = s.user_id
    group by s.user_id, s.item_id
),

ranked_items as (
    select
        *,
        row_number() over (
            partition by user_id
            order by last_ts desc, try_cast(item_id as double) desc nulls last, item_id desc
        ) as recency_rank
    from last_touch
)

select user_id, item_id, last_ts
from ranked_items
where recency_rank <= $holdout_items
