-- The staged items of one publish (decayrec.warehouse.base.ITEM_SCHEMA): COPY fills it,
-- publish_items reads it, commit drops it. attributes holds JSON text.
create temporary table staged_items (
    item_id text not null,
    title text,
    attributes text,
    first_seen timestamptz,
    last_seen timestamptz,
    n_users bigint,
    popularity double precision
) on commit drop
