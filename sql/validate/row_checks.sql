-- Returns the parsed rows of a batch (table parsed_batch) with the first row-level
-- expectation each row fails: expectation name, field and reason; all null for a good row.
-- A repeated event key is bad from its second occurrence on (by row number).
with parsed_rows as (
    select
        p.*,
        r.min_value,
        r.max_value
    from parsed_batch as p
    left join value_ranges as r on r.event_type = p.event_type
    where p.error_field is null
),

repeated_keys as (
    select user_id, item_id, event_type, event_ts, min(row_number) as first_row
    from parsed_rows
    group by user_id, item_id, event_type, event_ts
    having count(*) > 1
),

checked as (
    select
        p.*,
        coalesce(p.row_number <> k.first_row, false) as is_repeat
    from parsed_rows as p
    left join repeated_keys as k using (user_id, item_id, event_type, event_ts)
)

select
    row_number,
    case
        when not list_contains($event_types, event_type) then 'expect_column_values_to_be_in_set'
        when event_ts > $max_event_ts then 'expect_column_values_to_be_between'
        when event_ts < $min_event_ts then 'expect_column_values_to_be_between'
        when value < min_value or value > max_value then 'expect_column_values_to_be_between'
        when is_repeat then 'expect_compound_columns_to_be_unique'
    end as expectation,
    case
        when not list_contains($event_types, event_type) then 'event_type'
        when event_ts > $max_event_ts or event_ts < $min_event_ts then 'event_ts'
        when value < min_value or value > max_value then 'value'
        when is_repeat then 'user_id,item_id,event_type,event_ts'
    end as field,
    case
        when not list_contains($event_types, event_type)
            then 'event_type ' || to_json(event_type) || ' is not one of the configured types'
        when event_ts > $max_event_ts
            then 'event_ts ' || strftime(event_ts, '%Y-%m-%dT%H:%M:%SZ') || ' is in the future'
        when event_ts < $min_event_ts
            then 'event_ts ' || strftime(event_ts, '%Y-%m-%dT%H:%M:%SZ')
                || ' is before the floor ' || strftime($min_event_ts, '%Y-%m-%d')
        when value < min_value or value > max_value
            then 'value ' || value || ' is outside [' || coalesce(min_value::varchar, '-inf')
                || ', ' || coalesce(max_value::varchar, 'inf') || '] for ' || event_type
        when is_repeat then 'duplicate event key within the batch'
    end as reason
from checked
