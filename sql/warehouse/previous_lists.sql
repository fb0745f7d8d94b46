-- Returns the published lists (as_of_date, user_id, item_id, source) of the newest as-of
-- date before $as_of_date: what the publish check compares tonight's lists with. No rows
-- when nothing was published before. Plain SQL: the PostgreSQL warehouse runs it as is.
select
    as_of_date,
    user_id,
    item_id,
    source
from recommendations
where as_of_date = (
    select max(as_of_date)
    from recommendations
    where as_of_date < $as_of_date
)
