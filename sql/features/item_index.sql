-- Returns the dense item id map of the interactions table with each item's decayed
-- popularity (sum of its trend weights: ages from the as-of instant) and its number of
-- users: item_idx 0..n-1 in item_id order.
select
    (row_number() over (order by item_id) - 1)::integer as item_idx,
    item_id,
    popularity,
    count_users
from (
    select item_id, sum(trend_weight) as popularity, count(*) as count_users
    from interactions
    group by item_id
)
order by item_idx
