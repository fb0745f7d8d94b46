-- The versions of sql/warehouse_postgres/migrations/ applied to this warehouse (PostgreSQL).
create table if not exists schema_migrations (
    version integer primary key,
    name varchar not null,
    applied_at timestamptz not null
)
