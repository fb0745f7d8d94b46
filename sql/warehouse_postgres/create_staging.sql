-- The staging table of one publish: COPY fills it, the swap reads it, commit drops it.
create temporary table staged_lists (
    user_id text not null,
    rank integer not null,
    item_id text not null,
    score double precision,
    source text not null
) on commit drop
