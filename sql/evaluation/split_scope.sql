-- Defines the table macro split_scope(as_of): the events of split_events (the events a
-- split may see, with their columns) before as_of whose event type has a positive weight,
-- and that weight as type_weight.
-- Reads split_events and type_params (decayrec.lake.features.prepare_decay_tables).
create or replace temp macro split_scope(as_of) as table
select
    e.*,
    t.weight as type_weight
from split_events as e
join type_params as t on t.event_type = e.event_type
where e.event_ts < as_of and t.weight > 0
