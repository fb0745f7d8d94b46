-- Returns the evaluated truth of a split as decayrec's backtest keeps it: the truth rows
-- (user_id, item_id) of users who are in the training events, with in_training = whether
-- the item occurs in the training events at all (truth items that do not are dropped from
-- the metrics and counted). Parameters: $train (training events Parquet), $truth (truth
-- Parquet).
with training_users as (
    select distinct user_id
    from read_parquet($train)
),

training_items as (
    select distinct item_id
    from read_parquet($train)
),

truth_pairs as (
    select distinct user_id, item_id
    from read_parquet($truth)
)

select
    t.user_id,
    t.item_id,
    i.item_id is not null as in_training
from truth_pairs as t
semi join training_users as u on u.user_id = t.user_id
left join training_items as i on i.item_id = t.item_id
order by t.user_id, t.item_id
