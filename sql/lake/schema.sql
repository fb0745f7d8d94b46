-- The lake (a DuckDB file): canonical events, quarantined rows, the load log and the
-- staging area that holds a batch between ingestion and validation.

create table if not exists events (
    user_id varchar not null,
    item_id varchar not null,
    event_type varchar not null,
    event_ts timestamptz not null,
    value double,
    source varchar not null,
    batch_id varchar not null,
    ingested_at timestamptz not null
);

create table if not exists quarantine (
    batch_id varchar not null,
    source varchar not null,
    file varchar not null,
    row_number bigint,
    line bigint,
    raw varchar,
    field varchar,
    expectation varchar not null,
    reason varchar not null,
    run_id varchar,
    quarantined_at timestamptz not null
);

create table if not exists load_log (
    batch_id varchar not null,
    source varchar not null,
    file varchar not null,
    sha256 varchar not null,
    status varchar not null,
    rows_read bigint,
    rows_accepted bigint,
    rows_inserted bigint,
    rows_quarantined bigint,
    timestamp_unit varchar,
    validation_path varchar,
    message varchar,
    run_id varchar,
    logged_at timestamptz not null
);

create table if not exists staged_rows (
    batch_id varchar not null,
    row_number bigint not null,
    line bigint,
    raw varchar,
    user_id varchar,
    item_id varchar,
    event_type varchar,
    event_ts varchar,
    value varchar,
    parse_error varchar
);

-- rows of a loaded batch whose event key was already loaded with another value (the first
-- loaded value is kept), added after the first release: hence the alter
alter table load_log add column if not exists rows_conflicting bigint;
