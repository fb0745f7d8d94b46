-- Returns the training events of a global-time split, exactly the events decayrec's
-- backtest trains on: split_events before $cutoff whose event type has a positive weight.
-- Columns: user_id, item_id, event_type, type_weight (decay.type_weights), event_ts,
-- ts_seconds (epoch seconds, for peers that take numbers), value.
-- Reads split_events and type_params (decayrec.lake.features.prepare_decay_tables).
with training_events as (
    select
        e.user_id,
        e.item_id,
        e.event_type,
        t.weight as type_weight,
        e.event_ts,
        e.value
    from split_events as e
    join type_params as t on t.event_type = e.event_type
    where e.event_ts < $cutoff and t.weight > 0
)

select
    user_id,
    item_id,
    event_type,
    type_weight,
    event_ts,
    epoch_us(event_ts) / 1e6 as ts_seconds,
    value
from training_events
