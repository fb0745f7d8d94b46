-- How much each user's list changed from the previous kept as-of date to $as_of_date.
-- Returns: per user with a list on $as_of_date (most changed first): user_id, as_of_date,
-- previous_date (null when the user had no list then), n_items, n_kept (items in both
-- lists), n_new, n_dropped, jaccard = n_kept / items in either list (1: same items, 0: all
-- new), top_changed (the rank-1 item differs).
-- Parameters:
--   $as_of_date  the date to compare with the one before it, YYYY-MM-DD; '' for the newest (default: '')
-- Dialects: runs unchanged on DuckDB and PostgreSQL.
with compared_date as (
    select
        coalesce(
            cast(nullif(cast($as_of_date as varchar), '') as date),
            (select max(as_of_date) from recommendations)
        ) as as_of_date
),

compared_dates as (
    select
        compared_date.as_of_date,
        (
            select max(earlier.as_of_date)
            from recommendations as earlier
            where earlier.as_of_date < compared_date.as_of_date
        ) as previous_date
    from compared_date
),

current_lists as (
    select recommendations.user_id, recommendations.item_id, recommendations.rank
    from recommendations
    inner join compared_dates on recommendations.as_of_date = compared_dates.as_of_date
),

previous_lists as (
    select recommendations.user_id, recommendations.item_id, recommendations.rank
    from recommendations
    inner join compared_dates on recommendations.as_of_date = compared_dates.previous_date
),

kept_items as (
    select current_lists.user_id, count(*) as n_kept
    from current_lists
    inner join previous_lists
        on current_lists.user_id = previous_lists.user_id
        and current_lists.item_id = previous_lists.item_id
    group by current_lists.user_id
),

current_sizes as (
    select
        user_id,
        count(*) as n_items,
        min(case when rank = 1 then item_id end) as top_item
    from current_lists
    group by user_id
),

previous_sizes as (
    select
        user_id,
        count(*) as n_items,
        min(case when rank = 1 then item_id end) as top_item
    from previous_lists
    group by user_id
),

changes as (
    select
        current_sizes.user_id,
        compared_dates.as_of_date,
        case when previous_sizes.user_id is not null then compared_dates.previous_date end
            as previous_date,
        current_sizes.n_items,
        coalesce(kept_items.n_kept, 0) as n_kept,
        current_sizes.n_items - coalesce(kept_items.n_kept, 0) as n_new,
        coalesce(previous_sizes.n_items, 0) - coalesce(kept_items.n_kept, 0) as n_dropped,
        cast(coalesce(kept_items.n_kept, 0) as double precision)
        / (current_sizes.n_items + coalesce(previous_sizes.n_items, 0)
            - coalesce(kept_items.n_kept, 0)) as jaccard,
        previous_sizes.top_item is distinct from current_sizes.top_item as top_changed
    from current_sizes
    cross join compared_dates
    left join previous_sizes on current_sizes.user_id = previous_sizes.user_id
    left join kept_items on current_sizes.user_id = kept_items.user_id
)

select
    user_id,
    as_of_date,
    previous_date,
    n_items,
    n_kept,
    n_new,
    n_dropped,
    jaccard,
    top_changed
from changes
order by jaccard, length(user_id), user_id
