-- Returns the decay-weighted interaction of every (user, item) pair with events before
-- the reference time:  w(u, i) = S( sum_e type_weight(e) * K(age_e / memory_e) ),
-- age in days, memory_e = type memory * user memory, K and S as in decayrec/decay.py.
-- Reads source_events (a view), type_params (event_type, weight, memory), user_memory
-- (user_id, memory) and reference_times (user_id, ref_ts: a per-user reference time;
-- $as_of for users without one).
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

scaled_ages as (
    select
        s.user_id,
        s.item_id,
        s.event_ts,
        t.weight as type_weight,
        (epoch_us(s.ref_ts) - epoch_us(s.event_ts)) / 86400e6
            / (t.memory * coalesce(m.memory, 1.0)) as age
    from scoped_events as s
    join type_params as t on t.event_type = s.event_type
    left join user_memory as m on m.user_id = s.user_id
    where t.weight > 0
),

weighted_events as (
    select
        user_id,
        item_id,
        event_ts,
        type_weight * case $kernel
            when 'exponential' then exp(-ln(2) * age / $half_life_days)
            when 'power_law' then pow(1 + age / $power_tau_days, -$power_exponent)
            when 'sigmoid' then 1 / (1 + exp(
                least((age - $sigmoid_midpoint_days) / $sigmoid_width_days, 700)
            ))
            when 'window' then case when age < $window_days then 1.0 else 0.0 end
            else 1.0
        end as weight
    from scaled_ages
),

summed_pairs as (
    select
        user_id,
        item_id,
        sum(weight) as total,
        count(*) as n_events,
        max(event_ts) as last_ts
    from weighted_events
    group by user_id, item_id
)

select
    user_id,
    item_id,
    case $saturation
        when 'log1p' then ln(1 + total)
        when 'cap' then least(total, $saturation_cap)
        else total
    end as weight,
    n_events,
    last_ts
from summed_pairs
