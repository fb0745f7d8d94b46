-- Deletes the rows of items that the staged items (staged_items) replace: those whose
-- figures are as of $as_of_date or earlier (a newer date's row stays: an older date's
-- run never overwrites it). Runs in the publish transaction, before publish_items.
delete from items
where
    as_of_date <= cast($as_of_date as date)
    and item_id in (select item_id from staged_items)
