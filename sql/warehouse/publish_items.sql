-- Inserts the staged items (staged_items) with their figures as of $as_of_date, except
-- those that a newer date's row still holds (delete_items left it); with delete_items,
-- an upsert. Runs in the publish transaction.
insert into items (
    item_id, title, attributes, first_seen, last_seen, n_users, popularity,
    as_of_date, run_id, updated_at
)
select
    staged.item_id,
    staged.title,
    cast(staged.attributes as json) as attributes,
    staged.first_seen,
    staged.last_seen,
    staged.n_users,
    staged.popularity,
    $as_of_date as as_of_date,
    $run_id as run_id,
    $updated_at as updated_at
from staged_items as staged
where not exists (select 1 from items where items.item_id = staged.item_id)
order by staged.item_id
