-- The staging table of one publish: COPY fills it, the swap reads it, commit drops it.
-- because_items holds array literals ({"a","b"}): CSV has no lists.
create temporary table staged_lists (
    user_id text not null,
    rank integer not null,
    item_id text not null,
    score double precision,
    source text not null,
    reason text,
    because_items text,
    score_pct double precision
) on commit drop
