-- Catalogue coverage and list diversity of each as-of date in the kept history.
-- Returns: per as_of_date (oldest first): n_users; n_entries; n_items (distinct items
-- recommended); coverage = n_items / $catalog_size (with $catalog_size 0: / the distinct
-- items recommended on any kept date); top10_share = share of the entries taken by that
-- date's 10 most recommended items; item_entropy = Shannon entropy of the items' shares of
-- the entries divided by ln(n_items) (1: spread evenly over the items, 0: one item in
-- every list); fallback_share = share of entries from the popularity fallback.
-- Parameters:
--   $catalog_size  items in the catalogue, e.g. distinct items in the lake's events (default: 0)
-- Dialects: runs unchanged on DuckDB and PostgreSQL.
with entries as (
    select as_of_date, user_id, item_id, source
    from recommendations
),

item_counts as (
    select as_of_date, item_id, count(*) as n_entries
    from entries
    group by as_of_date, item_id
),

ranked_items as (
    select
        as_of_date,
        n_entries,
        row_number() over (partition by as_of_date order by n_entries desc, item_id) as item_rank
    from item_counts
),

day_totals as (
    select
        as_of_date,
        count(distinct user_id) as n_users,
        count(*) as n_entries,
        count(*) filter (where source = 'fallback') as n_fallback
    from entries
    group by as_of_date
),

item_spread as (
    select
        ranked_items.as_of_date,
        count(*) as n_items,
        cast(sum(case when ranked_items.item_rank <= 10 then ranked_items.n_entries else 0 end)
            as bigint) as n_top10,
        sum(
            -(cast(ranked_items.n_entries as double precision) / day_totals.n_entries)
            * ln(cast(ranked_items.n_entries as double precision) / day_totals.n_entries)
        ) as entropy
    from ranked_items
    inner join day_totals on ranked_items.as_of_date = day_totals.as_of_date
    group by ranked_items.as_of_date
),

catalogue as (
    select
        case
            when cast($catalog_size as integer) > 0 then cast($catalog_size as integer)
            else (select count(distinct item_id) from entries)
        end as n_items
)

select
    day_totals.as_of_date,
    day_totals.n_users,
    day_totals.n_entries,
    item_spread.n_items,
    cast(item_spread.n_items as double precision) / catalogue.n_items as coverage,
    cast(item_spread.n_top10 as double precision) / day_totals.n_entries as top10_share,
    case
        when item_spread.n_items > 1
            then item_spread.entropy / ln(cast(item_spread.n_items as double precision))
        else 0
    end as item_entropy,
    cast(day_totals.n_fallback as double precision) / day_totals.n_entries as fallback_share
from day_totals
inner join item_spread on day_totals.as_of_date = item_spread.as_of_date
cross join catalogue
order by day_totals.as_of_date
