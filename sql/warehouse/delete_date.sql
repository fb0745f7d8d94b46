-- Deletes the lists of $as_of_date; runs in the publish transaction, before the insert.
delete from recommendations
where as_of_date = $as_of_date
