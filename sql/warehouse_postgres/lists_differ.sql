-- Returns the number of list entries that differ between the staged lists (staged_lists)
-- and the lists already published for $as_of_date; 0 means a rerun changed nothing.
with published as (
    select user_id, rank, item_id, source, round(cast(score as numeric), 5) as score
    from recommendations
    where as_of_date = $as_of_date
),

staged as (
    select user_id, rank, item_id, source, round(cast(score as numeric), 5) as score
    from staged_lists
),

only_published as (
    select * from published
    except
    select * from staged
),

only_staged as (
    select * from staged
    except
    select * from published
)

select (select count(*) from only_published) + (select count(*) from only_staged) as n_different
