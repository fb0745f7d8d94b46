-- One user's current list, explained: the newest as-of date's entries, best first, with
-- each recommended item's title (from the items table) and why it is recommended: the
-- reason in plain words and the titles of the user's own items it names.
-- Returns: as_of_date, rank, item_id, title, attributes (the catalogue's other columns,
-- JSON text), source, score (the model's raw score), score_pct (1 = the best of the
-- user's unseen items), reason, because_items (ids), because_titles (their titles in
-- order, '; '-separated; the id where an item has no title); K rows, or none for a user
-- without a list.
-- Parameters:
--   $user_id  the user's id (required)
-- Dialects: runs unchanged on DuckDB and PostgreSQL.
with user_entries as (
    select as_of_date, rank, item_id, score, score_pct, source, reason, because_items
    from recommendations_latest
    where user_id = cast($user_id as varchar)
),

named_items as (
    select
        user_entries.rank,
        named.item_id,
        named.ordinal
    from user_entries
    cross join unnest(user_entries.because_items) with ordinality as named (item_id, ordinal)
),

named_titles as (
    select
        named_items.rank,
        string_agg(coalesce(items.title, named_items.item_id), '; ' order by named_items.ordinal)
            as because_titles
    from named_items
    left join items on items.item_id = named_items.item_id
    group by named_items.rank
)

select
    user_entries.as_of_date,
    user_entries.rank,
    user_entries.item_id,
    items.title,
    cast(items.attributes as varchar) as attributes,
    user_entries.source,
    user_entries.score,
    user_entries.score_pct,
    user_entries.reason,
    user_entries.because_items,
    named_titles.because_titles
from user_entries
left join items on items.item_id = user_entries.item_id
left join named_titles on named_titles.rank = user_entries.rank
order by user_entries.rank
