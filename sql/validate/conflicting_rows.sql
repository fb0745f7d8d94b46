-- Returns the good rows of a batch (parsed_batch less bad_rows) whose event key (user_id,
-- item_id, event_type, event_ts) is already in `events` with another value: they are not
-- inserted, the first loaded value is kept. At most $max_examples rows, in row order, each
-- with n_conflicting, the count of all such rows.
select
    p.row_number,
    p.line,
    p.user_id,
    p.item_id,
    p.event_type,
    p.event_ts,
    p.value,
    e.value as loaded_value,
    count(*) over () as n_conflicting
from parsed_batch as p
inner join events as e using (user_id, item_id, event_type, event_ts)
where
    p.error_field is null
    and p.value is distinct from e.value
    and not exists (select 1 from bad_rows as b where b.row_number = p.row_number)
order by p.row_number
limit $max_examples
