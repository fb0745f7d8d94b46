-- Returns the dense user id map of the interactions table: user_idx 0..n-1 in user_id order.
select
    (row_number() over (order by user_id) - 1)::integer as user_idx,
    user_id,
    count_items
from (
    select user_id, count(*) as count_items
    from interactions
    group by user_id
)
order by user_idx
