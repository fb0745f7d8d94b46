-- Returns the training events of a global-time split, exactly the events decayrec's
-- backtest trains on: split_events before $cutoff whose event type has a positive weight.
-- Columns: user_id, item_id, event_type, type_weight (decay.type_weights), event_ts,
-- ts_seconds (epoch seconds, for peers that take numbers), value.
-- Reads split_scope (sql/evaluation/split_scope.sql).
select
    user_id,
    item_id,
    event_type,
    type_weight,
    event_ts,
    epoch_us(event_ts) / 1e6 as ts_seconds,
    value
from split_scope($cutoff)
