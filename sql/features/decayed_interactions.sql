-- Returns the decay-weighted interaction of every (user, item) pair with events before
-- the reference time: w(u, i) = sum of type_weight(type) * K(ref_ts - event_ts), with
-- K(age) = 2^(-age / half_life) (kernel 'exponential') or 1 (kernel 'none').
-- Reads source_events (a view), type_params (event_type, weight, half_life_days) and
-- reference_times (user_id, ref_ts: a per-user reference; $as_of for users without one).
with scoped_events as (
    select
        e.user_id,
        e.item_id,
        e.event_type,
        e.event_ts,
        coalesce(r.ref_ts, $as_of) as ref_ts
    from source_events as e
    left join reference_times as r on r.user_id = e.user_id
    where e.event_ts < coalesce(r.ref_ts, $as_of)
),

weighted_events as (
    select
        s.user_id,
        s.item_id,
        s.event_ts,
        t.weight * case $kernel
            when 'exponential' then exp(
                -ln(2) * (epoch_us(s.ref_ts) - epoch_us(s.event_ts)) / 1e6
                / (t.half_life_days * 86400.0)
            )
            else 1.0
        end as weight
    from scoped_events as s
    join type_params as t on t.event_type = s.event_type
    where t.weight > 0
)

select
    user_id,
    item_id,
    sum(weight) as weight,
    count(*) as n_events,
    max(event_ts) as last_ts
from weighted_events
group by user_id, item_id
