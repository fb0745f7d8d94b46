-- Returns every ground-truth (user_idx, item_id) of a backtest, including truth items
-- that never occur in training (the protocol drops those; decayrec.content maps them to
-- the catalogue columns appended for cold-start items). Needs the temp tables `truth`
-- and `user_index` of decayrec.evaluation.backtest.
select u.user_idx, t.item_id
from truth as t
join user_index as u on u.user_id = t.user_id
order by u.user_idx, t.item_id
