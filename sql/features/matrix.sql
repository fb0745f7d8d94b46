-- Returns the interaction matrix in coordinate form on the dense ids, ordered by row.
select
    u.user_idx,
    i.item_idx,
    x.weight
from interactions as x
join user_index as u on u.user_id = x.user_id
join item_index as i on i.item_id = x.item_id
order by u.user_idx, i.item_idx
