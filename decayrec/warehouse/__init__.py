"""Warehouse writers: where the lists and the run history are published.

A warehouse is chosen by URL: `duckdb:///path/file.duckdb` is the embedded default,
`postgresql://user@host:port/db` the real warehouse (decayrec.warehouse.postgres). Both hold the
same tables and views, created and upgraded by the numbered migrations in
`sql/warehouse/migrations/` (DuckDB) and `sql/warehouse_postgres/migrations/`
(PostgreSQL); `schema_migrations` records which ones a warehouse has.

Publishing an as-of date is one transaction: stage the lists, delete that date's rows,
insert the staged ones, delete dates older than the kept history, commit. Readers see
the complete old lists or the complete new ones, and a rerun replaces a date rather than
appending to it. When a rerun produces exactly the lists already published, nothing is
rewritten (the tables stay identical).

SQL files bind values as `$name` parameters (DuckDB's style; the PostgreSQL writer turns
them into psycopg's `%(name)s`). URLs may hold a password: `url` attributes, messages and
records only ever carry `mask_url(url)`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import duckdb
import pyarrow as pa

from decayrec.config import WarehouseConfig, mask_url, url_passwords
from decayrec.sqlfiles import SQL_DIR, connect, split_statements, sql

if TYPE_CHECKING:
    from decayrec.config import DecayrecConfig


class WarehouseError(RuntimeError):
    """A warehouse problem that a retry of the task would not fix."""


class WarehouseUnavailable(WarehouseError):
    """The warehouse could not be reached, after the configured retries."""


class WarehouseConnectionLost(RuntimeError):
    """The connection broke during an operation (rolled back by the server): transient, so
    the Prefect task retries it (tasks.retry_transient)."""


class InjectedFailure(WarehouseError):
    """Raised by a publish when `warehouse.fail_after_staging` is set (drills and tests)."""


# The columns a publish takes, in order (the lists of decayrec.scoring.recommend).
LIST_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_id", pa.string()),
        ("score", pa.float64()),
        ("source", pa.string()),
    ]
)


@dataclass
class RunOutcome:
    status: str  # succeeded | failed
    metrics: dict[str, Any] | None = None
    stage_seconds: dict[str, float] | None = None
    n_users: int | None = None
    n_rows: int | None = None
    n_fallback_rows: int | None = None
    published: bool | None = None
    snapshot_id: str | None = None
    validation_paths: list[str] | None = None
    failed_task: str | None = None
    error: str | None = None


class Warehouse(Protocol):
    url: str  # masked: safe to print
    dialect: str  # duckdb | postgresql

    def ensure_schema(self, up_to: int | None = None) -> None: ...

    def schema_version(self) -> int: ...

    def start_run(
        self, run_id: str, as_of_date: date, model: str, params: dict[str, Any]
    ) -> None: ...

    def publish(self, as_of_date: date, lists: pa.Table, run_id: str, model: str) -> bool: ...

    def finish_run(self, run_id: str, outcome: RunOutcome) -> None: ...

    def record_user_decay(self, run_id: str, as_of_date: date, table: pa.Table) -> None: ...

    def query(self, query: str, params: dict[str, Any] | None = None) -> pa.Table: ...


def ab_bucket(salt: str, user_id: str) -> int:
    """The A/B bucket (0..99) of a user, as the warehouses' SQL function `ab_bucket`
    computes it: the first 8 hex digits of md5(salt + ':' + user_id) (UTF-8) read as an
    unsigned 32-bit integer, mod 100."""
    digest = hashlib.md5(f"{salt}:{user_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 100


def redact(text: str, url: str) -> str:
    """`text` with the URL's passwords (raw or percent-decoded) replaced by ***."""
    passwords = url_passwords(url)
    if not passwords:
        return text
    text = text.replace(url, mask_url(url))
    secrets = {s for password in passwords for s in (password, unquote(password)) if s}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


def keep_from(as_of_date: date, history_days: int) -> date:
    """The oldest as-of date kept when `as_of_date` is published (history_days days)."""
    return as_of_date - timedelta(days=history_days - 1)


def staged_lists(lists: pa.Table) -> pa.Table:
    """The lists with exactly the columns and types a publish takes."""
    missing = set(LIST_SCHEMA.names) - set(lists.column_names)
    if missing:
        raise WarehouseError(f"the lists to publish lack the columns {sorted(missing)}")
    return lists.select(LIST_SCHEMA.names).cast(LIST_SCHEMA)


# --- migrations ---------------------------------------------------------------------

_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: list[str]


def migrations(folder: str) -> list[Migration]:
    """The migrations of `sql/<folder>/migrations/` (files NNN_name.sql), in order."""
    found = []
    for path in sorted((SQL_DIR / folder / "migrations").glob("*.sql")):
        m = _MIGRATION_FILE.match(path.name)
        if not m:
            raise WarehouseError(f"{path}: migration files are named NNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), split_statements(path.read_text())))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise WarehouseError(f"sql/{folder}/migrations: versions must run 1, 2, 3...: {versions}")
    return found


APPLIED_VERSIONS = "select version from schema_migrations"
SCHEMA_VERSION = "select coalesce(max(version), 0) from schema_migrations"


def pending_migrations(folder: str, applied: set[int], up_to: int | None) -> list[Migration]:
    """The migrations of `folder` not yet applied, up to version `up_to` (None: all)."""
    return [
        m
        for m in migrations(folder)
        if m.version not in applied and (up_to is None or m.version <= up_to)
    ]


def record_run_locally(
    data_dir: str | Path, run_id: str, as_of_date: date, outcome: RunOutcome, warehouse_url: str
) -> Path:
    """Write a run's outcome to `<data_dir>/runs/<run_id>/run_record.json`: the record of a
    run whose warehouse could not take it (the password is masked)."""
    path = Path(data_dir) / "runs" / run_id / "run_record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "run_id": run_id,
        "as_of_date": as_of_date.isoformat(),
        "warehouse": mask_url(warehouse_url),
        "recorded_at": datetime.now(UTC).isoformat(),
        **{k: v for k, v in outcome.__dict__.items() if v is not None},
    }
    if record.get("error"):
        record["error"] = redact(record["error"], warehouse_url)
    path.write_text(json.dumps(record, indent=2, default=str, sort_keys=True))
    return path


# --- DuckDB -------------------------------------------------------------------------


class DuckDBWarehouse:
    """The embedded warehouse: one DuckDB file, opened per operation so readers can
    open it between runs."""

    dialect = "duckdb"

    def __init__(self, url: str, settings: WarehouseConfig | None = None) -> None:
        self.url = url
        self.path = duckdb_path(url)
        self.settings = settings or WarehouseConfig()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """A connection to the file. Another process holding it open (an analyst's
        read-only session, say) locks it: retried like PostgreSQL's connections
        (`connect_retries`, `retry_backoff_seconds`), then a clear WarehouseUnavailable."""
        attempts = self.settings.connect_retries + 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                return connect(self.path)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                last = " ".join(str(exc).split())
                if attempt < attempts:
                    time.sleep(self.settings.retry_backoff_seconds * 2 ** (attempt - 1))
        raise WarehouseUnavailable(
            f"DuckDB warehouse {self.path} is held open by another process: {attempts} "
            f"attempts failed over {time.monotonic() - started:.1f} s (close other sessions "
            f"on the file, or read it with read_only connections between runs); the last "
            f"said: {last}"
        ) from None

    def ensure_schema(self, up_to: int | None = None) -> None:
        """Apply the migrations this file lacks (each in its own transaction), up to
        version `up_to` (default: all)."""
        con = self._connect()
        try:
            con.execute(sql("warehouse/schema_migrations"))
            applied = {v for (v,) in con.execute(APPLIED_VERSIONS).fetchall()}
            for migration in pending_migrations("warehouse", applied, up_to):
                con.execute("begin transaction")
                try:
                    for statement in migration.statements:
                        con.execute(statement)
                    con.execute(
                        sql("warehouse/record_migration"),
                        {
                            "version": migration.version,
                            "name": migration.name,
                            "applied_at": datetime.now(UTC),
                        },
                    )
                    con.execute("commit")
                except Exception:
                    con.execute("rollback")
                    raise
        finally:
            con.close()

    def schema_version(self) -> int:
        con = self._connect()
        try:
            con.execute(sql("warehouse/schema_migrations"))
            return con.execute(SCHEMA_VERSION).fetchall()[0][0]
        finally:
            con.close()

    def start_run(self, run_id: str, as_of_date: date, model: str, params: dict[str, Any]) -> None:
        con = self._connect()
        try:
            con.execute(
                sql("warehouse/start_run"),
                {
                    "run_id": run_id,
                    "as_of_date": as_of_date,
                    "started_at": datetime.now(UTC),
                    "model": model,
                    "params": _json(params),
                },
            )
        finally:
            con.close()

    def publish(self, as_of_date: date, lists: pa.Table, run_id: str, model: str) -> bool:
        """Swap in `lists` as the lists of `as_of_date` and prune the dates older than the
        kept history, in one transaction; False when identical lists were already live."""
        lists = staged_lists(lists)
        con = self._connect()
        try:
            _register(con, "staged_lists", lists)
            con.execute("begin transaction")
            try:
                if self.settings.fail_after_staging:
                    raise InjectedFailure(
                        f"injected failure after staging {lists.num_rows} rows "
                        "(warehouse.fail_after_staging is set)"
                    )
                date_param = {"as_of_date": as_of_date}
                n_published = con.execute(sql("warehouse/count_published"), date_param).fetchall()[
                    0
                ][0]
                if n_published == lists.num_rows:
                    different = con.execute(sql("warehouse/lists_differ"), date_param).fetchall()[
                        0
                    ][0]
                    if different == 0:
                        con.execute("rollback")
                        return False
                con.execute(sql("warehouse/delete_date"), date_param)
                con.execute(
                    sql("warehouse/publish_lists"),
                    {
                        "as_of_date": as_of_date,
                        "model": model,
                        "run_id": run_id,
                        "generated_at": datetime.now(UTC),
                    },
                )
                con.execute(
                    sql("warehouse/prune_history"),
                    {"keep_from": keep_from(as_of_date, self.settings.history_days)},
                )
                con.execute("commit")
            except Exception:
                con.execute("rollback")
                raise
            return True
        finally:
            con.close()

    def finish_run(self, run_id: str, outcome: RunOutcome) -> None:
        con = self._connect()
        try:
            con.execute(sql("warehouse/finish_run"), _finish_params(run_id, outcome))
        finally:
            con.close()

    def record_user_decay(self, run_id: str, as_of_date: date, table: pa.Table) -> None:
        """Replace run `run_id`'s rows of user_decay_params with `table` (user_id, memory,
        drift, half_life_days), in one transaction."""
        con = self._connect()
        try:
            _register(con, "staged_user_decay", table)
            con.execute("begin transaction")
            try:
                con.execute(sql("warehouse/delete_user_decay"), {"run_id": run_id})
                con.execute(
                    sql("warehouse/publish_user_decay"),
                    {"run_id": run_id, "as_of_date": as_of_date},
                )
                con.execute("commit")
            except Exception:
                con.execute("rollback")
                raise
        finally:
            con.close()

    def query(self, query: str, params: dict[str, Any] | None = None) -> pa.Table:
        con = connect(self.path, read_only=True)
        try:
            return con.sql(query, params=params or None).to_arrow_table()
        finally:
            con.close()


def _register(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """con.register, retried: DuckDB's Python module adds its arrow scan function to a new
    database instance just after creating it, and a connection that another thread opens
    at that moment can miss it for a few milliseconds (CatalogException)."""
    for attempt in range(5):
        try:
            con.register(name, table)
            return
        except duckdb.CatalogException as exc:
            if "arrow_scan" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.01 * (attempt + 1))


def _finish_params(run_id: str, outcome: RunOutcome) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "status": outcome.status,
        "finished_at": datetime.now(UTC),
        "metrics": _json(outcome.metrics),
        "stage_seconds": _json(outcome.stage_seconds),
        "n_users": outcome.n_users,
        "n_rows": outcome.n_rows,
        "n_fallback_rows": outcome.n_fallback_rows,
        "published": outcome.published,
        "snapshot_id": outcome.snapshot_id,
        "validation_paths": _json(outcome.validation_paths),
        "failed_task": outcome.failed_task,
        "error": outcome.error,
    }


def duckdb_path(url: str) -> Path:
    """`duckdb:///relative/file.duckdb` or `duckdb:////absolute/file.duckdb` (as SQLAlchemy)."""
    prefix = "duckdb:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise WarehouseError(
            f"a DuckDB warehouse URL looks like duckdb:///path/file.duckdb, got {url!r}"
        )
    return Path(url[len(prefix) :])


def open_warehouse(url: str, settings: WarehouseConfig | None = None) -> Warehouse:
    """The warehouse of a URL: duckdb:///path/file.duckdb or postgresql://user:pw@host/db.

    The lower-level door: flows, tasks and commands open the warehouse of a config with
    `configured_warehouse(config)`, which passes config.warehouse (schema_name, retries,
    timeouts); a bare `open_warehouse(url)` uses the defaults (PostgreSQL: `public`)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "duckdb":
        return DuckDBWarehouse(url, settings)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from decayrec.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(url, settings)
    raise WarehouseError(
        f"unsupported warehouse URL scheme {scheme!r} (expected duckdb:///path/file.duckdb "
        "or postgresql://user@host:port/database)"
    )


def configured_warehouse(config: DecayrecConfig, url: str | None = None) -> Warehouse:
    """The warehouse a config points at (URL from the config, a Prefect Secret block or the
    environment; see DecayrecConfig.resolved_warehouse_url) with its settings
    (config.warehouse: schema_name, retries, timeouts). The one way code opens the
    warehouse of a config. `url`, when given, replaces the config's URL (a URL typed on
    the command line, which may hold a password and so is never stored in a config); the
    settings still come from the config."""
    return open_warehouse(url or config.resolved_warehouse_url, config.warehouse)
