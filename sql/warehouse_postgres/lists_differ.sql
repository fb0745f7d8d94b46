-- Returns the number of (user_id, rank) entries that differ between the staged lists
-- (staged_lists) and the lists already published for $as_of_date (item, source or score
-- rounded to 5 decimals, or present on one side only); 0 means a rerun changed nothing.
with published as (
    select user_id, rank, item_id, source, score
    from recommendations
    where as_of_date = $as_of_date
),

differing_entries as (
    select staged_lists.user_id
    from staged_lists
    full join published
        on staged_lists.user_id = published.user_id
        and staged_lists.rank = published.rank
    where
        staged_lists.user_id is null
        or published.user_id is null
        or staged_lists.item_id <> published.item_id
        or staged_lists.source <> published.source
        or round(cast(staged_lists.score as numeric), 5)
        is distinct from round(cast(published.score as numeric), 5)
)

select count(*) as n_different
from differing_entries
