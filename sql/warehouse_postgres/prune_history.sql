-- Deletes the lists of dates before $keep_from (the as-of date being published minus
-- history_days - 1); runs in the publish transaction, after the new lists are in.
delete from recommendations
where as_of_date < $keep_from
