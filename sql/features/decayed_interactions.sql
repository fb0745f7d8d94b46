-- Returns every (user, item) pair with events before $as_of and its weights:
--   weight       w(u, i) = S( sum_e type_weight(e) * K(age_e / memory_e) ): what models
--                learn from. age_e counts from the user's reference time: $as_of
--                ($reference = 'as_of') or the user's own latest event ('user_last');
--   score_weight weight * 2^(-n / $recency_events), n = the user's items last touched
--                strictly later than this one (= weight when $recency_events is 0): the
--                row a user is scored with;
--   trend_weight the same sum with every age counted from $as_of (decayed popularity);
--   n_events, last_ts (the pair's latest event).
-- memory_e = type memory * user memory; K is the macro decay_kernel, S the saturation.
-- Reads source_events (a view), type_params (event_type, weight, memory), user_memory
-- (user_id, memory).
with typed_events as (
    select
        e.user_id,
        e.item_id,
        e.event_ts,
        t.weight as type_weight,
        t.memory as type_memory
    from source_events as e
    join type_params as t on t.event_type = e.event_type
    where e.event_ts < $as_of and t.weight > 0
),

referenced_events as (
    select
        *,
        case $reference
            when 'user_last' then max(event_ts) over (partition by user_id)
            else $as_of
        end as ref_ts
    from typed_events
),

scaled_ages as (
    select
        r.user_id,
        r.item_id,
        r.event_ts,
        r.type_weight,
        r.type_memory * coalesce(m.memory, 1.0) as memory,
        (epoch_us(r.ref_ts) - epoch_us(r.event_ts)) / 86400e6 as age,
        (epoch_us($as_of) - epoch_us(r.event_ts)) / 86400e6 as trend_age
    from referenced_events as r
    left join user_memory as m on m.user_id = r.user_id
),

weighted_events as (
    select
        user_id,
        item_id,
        event_ts,
        type_weight * decay_kernel(
            age / memory, $kernel, $half_life_days, $power_tau_days, $power_exponent,
            $sigmoid_midpoint_days, $sigmoid_width_days, $window_days
        ) as weight,
        type_weight * decay_kernel(
            trend_age / memory, $kernel, $half_life_days, $power_tau_days, $power_exponent,
            $sigmoid_midpoint_days, $sigmoid_width_days, $window_days
        ) as trend_weight
    from scaled_ages
),

summed_pairs as (
    select
        user_id,
        item_id,
        sum(weight) as total,
        sum(trend_weight) as trend_total,
        count(*) as n_events,
        max(event_ts) as last_ts
    from weighted_events
    group by user_id, item_id
),

saturated_pairs as (
    select
        user_id,
        item_id,
        case $saturation
            when 'log1p' then ln(1 + total)
            when 'cap' then least(total, $saturation_cap)
            else total
        end as weight,
        case $saturation
            when 'log1p' then ln(1 + trend_total)
            when 'cap' then least(trend_total, $saturation_cap)
            else trend_total
        end as trend_weight,
        n_events,
        last_ts,
        rank() over (partition by user_id order by last_ts desc) - 1 as n_later
    from summed_pairs
)

select
    user_id,
    item_id,
    weight,
    case
        when $recency_events > 0 then weight * pow(2, -n_later / $recency_events)
        else weight
    end as score_weight,
    trend_weight,
    n_events,
    last_ts
from saturated_pairs
