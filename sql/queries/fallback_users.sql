-- Users whose lists were produced by the popularity fallback (source = 'fallback') on
-- $as_of_date: users with too little history get a list from it entirely, and a model list
-- that comes up short is topped up from it.
-- Returns: user_id, n_entries, n_fallback (entries from the fallback), fully_fallback
-- (every entry from it); users with at least one fallback entry, fully_fallback first.
-- Parameters:
--   $as_of_date  YYYY-MM-DD; '' for the newest date (default: '')
-- Dialects: runs unchanged on DuckDB and PostgreSQL.
with chosen_date as (
    select
        coalesce(
            cast(nullif(cast($as_of_date as varchar), '') as date),
            (select max(as_of_date) from recommendations)
        ) as as_of_date
),

user_sources as (
    select
        recommendations.user_id,
        count(*) as n_entries,
        count(*) filter (where recommendations.source = 'fallback') as n_fallback
    from recommendations
    inner join chosen_date on recommendations.as_of_date = chosen_date.as_of_date
    group by recommendations.user_id
)

select
    user_id,
    n_entries,
    n_fallback,
    n_fallback = n_entries as fully_fallback
from user_sources
where n_fallback > 0
order by fully_fallback desc, n_fallback desc, length(user_id), user_id
