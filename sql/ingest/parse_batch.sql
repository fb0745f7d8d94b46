-- Returns every staged row of a batch with typed fields and, for rows that cannot be
-- parsed, the field and the reason (null when the row parses). Ids are kept exactly as
-- given, leading and trailing spaces included; an id that is empty once trimmed is missing.
with trimmed as (
    select
        row_number,
        line,
        raw,
        parse_error as read_error,
        case when trim(user_id) <> '' then user_id end as user_id,
        case when trim(item_id) <> '' then item_id end as item_id,
        coalesce(nullif(trim(event_type), ''), $default_event_type) as event_type,
        nullif(trim(event_ts), '') as event_ts_raw,
        nullif(trim(value), '') as value_raw
    from staged_rows
    where batch_id = $batch_id
),

typed as (
    select
        *,
        case
            when $timestamp_unit = 'iso' then try_cast(event_ts_raw as timestamptz)
            else try(
                make_timestamp(
                    cast(
                        try_cast(event_ts_raw as double) * case $timestamp_unit
                            when 's' then 1e6 when 'ms' then 1e3 when 'us' then 1.0 else 1e-3
                        end as bigint
                    )
                )::timestamptz
            )
        end as event_ts,
        try_cast(value_raw as double) as value
    from trimmed
)

select
    row_number,
    line,
    raw,
    user_id,
    item_id,
    event_type,
    event_ts,
    value,
    case
        when read_error is not null then 'row'
        when user_id is null then 'user_id'
        when item_id is null then 'item_id'
        when event_type is null then 'event_type'
        when event_ts_raw is null then 'event_ts'
        when event_ts is null then 'event_ts'
        when value_raw is not null and value is null then 'value'
    end as error_field,
    case
        when read_error is not null then read_error
        when user_id is null then 'user_id is missing'
        when item_id is null then 'item_id is missing'
        when event_type is null then 'event_type is missing'
        when event_ts_raw is null then 'event_ts is missing'
        when event_ts is null
            then 'event_ts ' || to_json(event_ts_raw) || ' is not a valid ' || $timestamp_unit
                || ' timestamp'
        when value_raw is not null and value is null
            then 'value ' || to_json(value_raw) || ' is not a number'
    end as error_reason
from typed
