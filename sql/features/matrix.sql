-- Returns the interaction matrix in coordinate form on the dense ids, ordered by row:
-- the weight models learn from, the weight users are scored with, and the epoch seconds
-- of the pair's latest event. Reads interactions, user_index, item_index.
select
    u.user_idx,
    i.item_idx,
    x.weight,
    x.score_weight,
    epoch_us(x.last_ts) / 1e6 as ts
from interactions as x
join user_index as u on u.user_id = x.user_id
join item_index as i on i.item_id = x.item_id
order by u.user_idx, i.item_idx
