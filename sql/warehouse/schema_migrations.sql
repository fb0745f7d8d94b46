-- The versions of sql/warehouse/migrations/ applied to this warehouse (DuckDB).
create table if not exists schema_migrations (
    version integer primary key,
    name varchar not null,
    applied_at timestamptz not null
)
