-- Returns a peer's top-K lists (Parquet $lists: user_id, rank, item_id) for the users of
-- the truth, as decayrec's backtest would score them: items the user had in the training
-- events are removed, the rest keep their order and get positions 1..$k.
-- Columns: user_id, position, item_id, n_seen_removed (per user: entries removed).
-- Parameters: $lists, $train (training events Parquet), $truth (truth Parquet), $k.
with evaluated_users as (
    select distinct user_id
    from read_parquet($truth)
),

listed as (
    select l.user_id, l.rank, l.item_id
    from read_parquet($lists) as l
    semi join evaluated_users as e on e.user_id = l.user_id
),

seen_pairs as (
    select distinct t.user_id, t.item_id
    from read_parquet($train) as t
    semi join evaluated_users as e on e.user_id = t.user_id
),

unseen_entries as (
    select
        l.user_id,
        l.item_id,
        row_number() over (partition by l.user_id order by l.rank) as position,
        count(*) over (partition by l.user_id) as n_kept
    from listed as l
    anti join seen_pairs as s on s.user_id = l.user_id and s.item_id = l.item_id
),

removed_counts as (
    select l.user_id, count(*) as n_listed
    from listed as l
    group by l.user_id
)

select
    u.user_id,
    u.position,
    u.item_id,
    r.n_listed - u.n_kept as n_seen_removed
from unseen_entries as u
join removed_counts as r on r.user_id = u.user_id
where u.position <= $k
order by u.user_id, u.position
