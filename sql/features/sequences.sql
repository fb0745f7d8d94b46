-- Returns each user's most recent events before $as_of (at most $max_len per user, event
-- types with weight > 0), oldest first, for sequence models: user_idx, item_idx, ts (epoch
-- seconds), ref_ts (epoch seconds of $as_of, when the user is recommended to). Events of
-- one (user, item, time) count once.
-- Reads source_events, type_params, user_index and item_index.
with scoped_events as (
    select distinct
        e.user_id,
        e.item_id,
        e.event_ts
    from source_events as e
    join type_params as t on t.event_type = e.event_type
    where e.event_ts < $as_of and t.weight > 0
),

indexed_events as (
    select
        u.user_idx,
        i.item_idx,
        epoch_us(s.event_ts) / 1e6 as ts,
        epoch_us($as_of) / 1e6 as ref_ts
    from scoped_events as s
    join user_index as u on u.user_id = s.user_id
    join item_index as i on i.item_id = s.item_id
),

recent_events as (
    select *
    from indexed_events
    qualify row_number() over (
        partition by user_idx order by ts desc, item_idx desc
    ) <= $max_len
)

select user_idx, item_idx, ts, ref_ts
from recent_events
order by user_idx, ts, item_idx
