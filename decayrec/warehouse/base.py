"""What both warehouses share: the run outcome, the columns a publish takes, and the publish
steps, written once in `Warehouse`; each dialect (decayrec.warehouse.duckdb_warehouse,
decayrec.warehouse.postgres) supplies its connections, its transactions, its staging and
its reads.

Publishing an as-of date is one transaction: stage the lists (and the items they name),
delete that date's rows, insert the staged ones, upsert the items, delete dates older
than the kept history, commit. Readers see the complete old lists or the complete new
ones, and a rerun replaces a date rather than appending to it. When a rerun produces
exactly the lists already published, the lists are not rewritten (only the items are
upserted; without items the transaction is rolled back, the tables stay identical).

SQL files bind values as `$name` parameters (DuckDB's style; the PostgreSQL writer turns
them into psycopg's `%(name)s`). URLs may hold a password: `url` attributes, messages and
records only ever carry `mask_url(url)`.
"""

import hashlib
import json
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from decayrec.config import WarehouseConfig, mask_url, url_passwords
from decayrec.sqlfiles import sql
from decayrec.warehouse.errors import InjectedFailure, WarehouseError
from decayrec.warehouse.migrations import APPLIED_VERSIONS, SCHEMA_VERSION, pending_migrations

# The columns a publish takes, in order (the lists of decayrec.scoring.recommend).
LIST_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_id", pa.string()),
        ("score", pa.float64()),
        ("source", pa.string()),
        ("reason", pa.string()),
        ("because_items", pa.list_(pa.string())),
        ("score_pct", pa.float64()),
    ]
)
# columns lists written before they existed may lack (published as nulls)
OPTIONAL_LIST_COLUMNS = ("reason", "because_items", "score_pct")

# The columns of the items a publish upserts (decayrec.scoring.items.item_table).
ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("attributes", pa.string()),  # JSON text
        ("first_seen", pa.timestamp("us", tz="UTC")),
        ("last_seen", pa.timestamp("us", tz="UTC")),
        ("n_users", pa.int64()),
        ("popularity", pa.float64()),
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
    """The lists with exactly the columns and types a publish takes (the explanation
    columns null where lists written before them lack them)."""
    for name in OPTIONAL_LIST_COLUMNS:
        if name not in lists.column_names:
            field = LIST_SCHEMA.field(name)
            lists = lists.append_column(field, pa.nulls(lists.num_rows, field.type))
    missing = set(LIST_SCHEMA.names) - set(lists.column_names)
    if missing:
        raise WarehouseError(f"the lists to publish lack the columns {sorted(missing)}")
    return lists.select(LIST_SCHEMA.names).cast(LIST_SCHEMA)


def staged_items(items: pa.Table) -> pa.Table:
    """The items with exactly the columns and types a publish takes."""
    missing = set(ITEM_SCHEMA.names) - set(items.column_names)
    if missing:
        raise WarehouseError(f"the items to publish lack the columns {sorted(missing)}")
    return items.select(ITEM_SCHEMA.names).cast(ITEM_SCHEMA)


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


class _AlreadyLive(Exception):
    """Raised inside a publish's transaction to roll it back: the lists are live already."""


class Warehouse(ABC):
    """A warehouse of the lists and the run history. The steps of each operation are written
    here once; a dialect supplies its transactions, its staging of the lists, its user-decay
    load and its reads. A step's SQL is `sql/<sql_folder>/<name>.sql`."""

    dialect: str  # duckdb | postgresql
    sql_folder: str  # warehouse | warehouse_postgres
    url: str  # masked: safe to print
    settings: WarehouseConfig

    # --- what a dialect supplies ---------------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """One connection, one transaction, yielding the cursor: committed when the block
        ends, rolled back (and the connection closed) when it raises."""

    @abstractmethod
    def _publishing(self, lists: pa.Table, items: pa.Table | None) -> AbstractContextManager[Any]:
        """A transaction (as _transaction) in which `lists` read as the table
        `staged_lists` and `items` (when given) as `staged_items` (PostgreSQL: holding
        the publish lock)."""

    @abstractmethod
    def _migrating(self) -> AbstractContextManager[Any]:
        """The cursor the migrations run on, under the migration lock where there is one."""

    def _migration(self, cur: Any) -> AbstractContextManager[Any]:
        """The transaction of one migration on the cursor of _migrating (by default, the
        transaction of _migrating itself: all or nothing)."""
        return nullcontext(cur)

    @abstractmethod
    def record_user_decay(self, run_id: str, as_of_date: date, table: pa.Table) -> None:
        """Replace run `run_id`'s rows of user_decay_params with `table` (user_id, memory,
        drift, half_life_days), in one transaction."""

    @abstractmethod
    def query(self, query: str, params: dict[str, Any] | None = None) -> pa.Table:
        """The result of a query with `$name` parameters, as an Arrow table."""

    def _execute(self, cur: Any, name: str, params: dict[str, Any] | None = None) -> Any:
        """Run `sql/<sql_folder>/<name>.sql` with `params` bound; the cursor."""
        return cur.execute(sql(f"{self.sql_folder}/{name}"), params)

    def _value(self, cur: Any, name: str, params: dict[str, Any]) -> Any:
        """The one value `sql/<sql_folder>/<name>.sql` returns."""
        return self._execute(cur, name, params).fetchone()[0]

    # --- the steps both dialects share ---------------------------------------------

    def ensure_schema(self, up_to: int | None = None) -> None:
        """Apply the migrations this warehouse lacks (`sql/<sql_folder>/migrations/`), up
        to version `up_to` (default: all, then COMMENT ON every table, view and column
        from decayrec.warehouse.reference)."""
        with self._migrating() as cur:
            self._execute(cur, "schema_migrations")
            applied = {v for (v,) in cur.execute(APPLIED_VERSIONS).fetchall()}
            for migration in pending_migrations(self.sql_folder, applied, up_to):
                with self._migration(cur):
                    for statement in migration.statements:
                        cur.execute(statement)
                    self._execute(
                        cur,
                        "record_migration",
                        {
                            "version": migration.version,
                            "name": migration.name,
                            "applied_at": datetime.now(UTC),
                        },
                    )
            # the reference describes the newest schema: documented when it is reached
            from decayrec.warehouse.reference import comment_statements

            for statement in comment_statements(self.dialect) if up_to is None else []:
                cur.execute(statement)

    def schema_version(self) -> int:
        with self._transaction() as cur:
            self._execute(cur, "schema_migrations")
            return cur.execute(SCHEMA_VERSION).fetchone()[0]

    def start_run(self, run_id: str, as_of_date: date, model: str, params: dict[str, Any]) -> None:
        with self._transaction() as cur:
            self._execute(
                cur,
                "start_run",
                {
                    "run_id": run_id,
                    "as_of_date": as_of_date,
                    "started_at": datetime.now(UTC),
                    "model": model,
                    "params": _json(params),
                },
            )

    def publish(
        self,
        as_of_date: date,
        lists: pa.Table,
        run_id: str,
        model: str,
        items: pa.Table | None = None,
    ) -> bool:
        """Swap in `lists` as the lists of `as_of_date`, upsert `items` (the catalogue
        and figures of decayrec.scoring.items, when given) and prune the dates older than
        the kept history, in one transaction; False when identical lists were already
        live (then only the items are written)."""
        lists = staged_lists(lists)
        items = None if items is None else staged_items(items)
        on_date = {"as_of_date": as_of_date}
        try:
            with self._publishing(lists, items) as cur:
                if self.settings.fail_after_staging:
                    raise InjectedFailure(
                        f"injected failure after staging {lists.num_rows} rows "
                        "(warehouse.fail_after_staging is set)"
                    )
                if items is not None:
                    self._execute(cur, "delete_items", on_date)
                    self._execute(
                        cur,
                        "publish_items",
                        {**on_date, "run_id": run_id, "updated_at": datetime.now(UTC)},
                    )
                if (
                    self._value(cur, "count_published", on_date) == lists.num_rows
                    and self._value(cur, "lists_differ", on_date) == 0
                ):
                    if items is not None:
                        return False  # the items committed, the lists left as they are
                    raise _AlreadyLive
                self._execute(cur, "delete_date", on_date)
                self._execute(
                    cur,
                    "publish_lists",
                    {
                        "as_of_date": as_of_date,
                        "model": model,
                        "run_id": run_id,
                        "generated_at": datetime.now(UTC),
                    },
                )
                self._execute(
                    cur,
                    "prune_history",
                    {"keep_from": keep_from(as_of_date, self.settings.history_days)},
                )
        except _AlreadyLive:
            return False
        return True

    def finish_run(self, run_id: str, outcome: RunOutcome) -> None:
        with self._transaction() as cur:
            self._execute(
                cur,
                "finish_run",
                {
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
                },
            )
