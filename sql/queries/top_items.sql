-- The items recommended most today: how many of the newest lists hold each item.
-- Returns: item_id, n_lists (lists holding it), share_of_lists (n_lists / users with a
-- list), best_rank, mean_rank; most recommended first (ties: item_id, numeric ids in
-- numeric order), $limit rows.
-- Parameters:
--   $limit  how many items (default: 20)
-- Dialects: runs unchanged on DuckDB and PostgreSQL.
with latest_entries as (
    select user_id, item_id, rank
    from recommendations_latest
),

audience as (
    select count(distinct user_id) as n_users
    from latest_entries
),

item_counts as (
    select
        item_id,
        count(*) as n_lists,
        min(rank) as best_rank,
        cast(avg(rank) as double precision) as mean_rank
    from latest_entries
    group by item_id
)

select
    item_counts.item_id,
    item_counts.n_lists,
    cast(item_counts.n_lists as double precision) / audience.n_users as share_of_lists,
    item_counts.best_rank,
    item_counts.mean_rank
from item_counts
cross join audience
order by item_counts.n_lists desc, length(item_counts.item_id), item_counts.item_id
limit cast($limit as integer)
