"""The PostgreSQL warehouse: the same tables, views and publish contract as DuckDB's.

    postgresql://user:password@host:5432/database   (postgres:// and postgresql+psycopg://
                                                     are accepted too)

The URL with its password comes from the environment or a Prefect Secret block (see
DecayrecConfig.resolved_warehouse_url); this module only ever shows `mask_url(url)`.

A publish is one transaction on one connection: take an advisory lock (one publisher at
a time), create a temporary staging table, COPY the lists into it (CSV written by Arrow,
streamed, never row by row), compare with the published lists of the date (identical:
roll back, return False), delete the date, insert from staging, delete the dates older
than the kept history, commit. Readers of `recommendations_latest` run in their own
snapshots and see the old lists until the commit and the new ones after it.

Connecting retries `connect_retries` times, waiting `retry_backoff_seconds * 2^(n-1)`
before retry n, then raises WarehouseUnavailable.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql as pgsql

from decayrec.config import WarehouseConfig, check_identifier, mask_url
from decayrec.sqlfiles import sql
from decayrec.warehouse import (
    APPLIED_VERSIONS,
    SCHEMA_VERSION,
    InjectedFailure,
    RunOutcome,
    WarehouseConnectionLost,
    WarehouseError,
    WarehouseUnavailable,
    _finish_params,
    _json,
    keep_from,
    pending_migrations,
    redact,
    staged_lists,
)

# pg_advisory_xact_lock keys: one publish and one migration at a time per database.
PUBLISH_LOCK = 0x6465_6361_7901
MIGRATE_LOCK = 0x6465_6361_7902
COPY_BATCH_ROWS = 200_000

_PARAM = re.compile(r"'(?:[^']|'')*'|--[^\n]*|\$([A-Za-z_][A-Za-z0-9_]*)|%")


def to_psycopg(query: str) -> str:
    """A query with `$name` parameters in psycopg's style: `%(name)s`, and `%` doubled
    (psycopg reads `%` everywhere, string literals and comments included)."""

    def swap(m: re.Match) -> str:
        text = m.group(0)
        if m.group(1):
            return f"%({m.group(1)})s"
        return text.replace("%", "%%")

    return _PARAM.sub(swap, query)


def libpq_url(url: str) -> str:
    """The URL as libpq takes it (without a SQLAlchemy driver suffix)."""
    return re.sub(r"^postgres(?:ql)?(?:\+psycopg)?://", "postgresql://", url, flags=re.I)


class PostgresWarehouse:
    dialect = "postgresql"

    def __init__(self, url: str, settings: WarehouseConfig | None = None) -> None:
        self._dsn = libpq_url(url)
        self.url = mask_url(url)
        self.settings = settings or WarehouseConfig()
        if self.settings.schema_name is not None:
            # settings built with model_construct skip validation: check again here
            check_identifier(self.settings.schema_name, "warehouse.schema_name")

    def __repr__(self) -> str:
        return f"PostgresWarehouse({self.url!r})"

    # --- connections --------------------------------------------------------------

    def _error(self, exc: BaseException) -> str:
        return redact(" ".join(str(exc).split()), self._dsn)

    def _connect_once(self) -> psycopg.Connection:
        con = psycopg.connect(
            self._dsn,
            connect_timeout=self.settings.connect_timeout_seconds,
            application_name="decayrec",
        )
        if self.settings.schema_name is not None:
            # the quoted identifier is bound as a value, never pasted into SQL
            con.execute(
                "select set_config('search_path', %s, false)",
                ['"' + self.settings.schema_name + '"'],
            )
            con.commit()
        return con

    def _connect_with_retries(self) -> psycopg.Connection:
        attempts = self.settings.connect_retries + 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                return self._connect_once()
            except psycopg.OperationalError as exc:
                last = self._error(exc)
                if attempt < attempts:
                    time.sleep(self.settings.retry_backoff_seconds * 2 ** (attempt - 1))
        raise WarehouseUnavailable(
            f"PostgreSQL warehouse {self.url} is unreachable: {attempts} connection attempts "
            f"failed over {time.monotonic() - started:.1f} s; the last said: {last}"
        ) from None

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor]:
        """One connection, one transaction: committed when the block ends, rolled back
        (and the connection closed) when it raises."""
        con = self._connect_with_retries()
        try:
            with con.cursor() as cur:
                yield cur
            con.commit()
        except psycopg.OperationalError as exc:
            if not con.closed:
                con.rollback()
            raise WarehouseConnectionLost(
                f"PostgreSQL warehouse {self.url}: {self._error(exc)}"
            ) from None
        except psycopg.Error as exc:
            con.rollback()
            raise WarehouseError(f"PostgreSQL warehouse {self.url}: {self._error(exc)}") from None
        except BaseException:
            if not con.closed:
                con.rollback()
            raise
        finally:
            con.close()

    def _execute(self, cur: psycopg.Cursor, name: str, params: dict[str, Any] | None = None):
        if params is None:
            return cur.execute(sql(name))
        return cur.execute(to_psycopg(sql(name)), params)

    # --- the Warehouse protocol ---------------------------------------------------

    def ensure_schema(self, up_to: int | None = None) -> None:
        """Create the schema (if configured) and apply the migrations this database lacks,
        up to version `up_to` (default: all), in one transaction."""
        with self._transaction() as cur:
            if self.settings.schema_name is not None:
                cur.execute(
                    pgsql.SQL("create schema if not exists {}").format(
                        pgsql.Identifier(self.settings.schema_name)
                    )
                )
            cur.execute("select pg_advisory_xact_lock(%s)", [MIGRATE_LOCK])
            self._execute(cur, "warehouse_postgres/schema_migrations")
            applied = {v for (v,) in cur.execute(APPLIED_VERSIONS)}
            for migration in pending_migrations("warehouse_postgres", applied, up_to):
                for statement in migration.statements:
                    cur.execute(statement)
                self._execute(
                    cur,
                    "warehouse_postgres/record_migration",
                    {
                        "version": migration.version,
                        "name": migration.name,
                        "applied_at": datetime.now(UTC),
                    },
                )

    def schema_version(self) -> int:
        with self._transaction() as cur:
            self._execute(cur, "warehouse_postgres/schema_migrations")
            return cur.execute(SCHEMA_VERSION).fetchone()[0]

    def start_run(self, run_id: str, as_of_date: date, model: str, params: dict[str, Any]) -> None:
        with self._transaction() as cur:
            self._execute(
                cur,
                "warehouse_postgres/start_run",
                {
                    "run_id": run_id,
                    "as_of_date": as_of_date,
                    "started_at": datetime.now(UTC),
                    "model": model,
                    "params": _json(params),
                },
            )

    def publish(self, as_of_date: date, lists: pa.Table, run_id: str, model: str) -> bool:
        """Swap in `lists` as the lists of `as_of_date` and prune the dates older than the
        kept history, in one transaction; False when identical lists were already live."""
        lists = staged_lists(lists)
        with self._transaction() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", [PUBLISH_LOCK])
            self._execute(cur, "warehouse_postgres/create_staging")
            self._copy(cur, lists)
            if self.settings.fail_after_staging:
                raise InjectedFailure(
                    f"injected failure after staging {lists.num_rows} rows "
                    "(warehouse.fail_after_staging is set)"
                )
            cur.execute("analyze staged_lists")
            date_param = {"as_of_date": as_of_date}
            self._execute(cur, "warehouse_postgres/count_published", date_param)
            if cur.fetchone()[0] == lists.num_rows:
                self._execute(cur, "warehouse_postgres/lists_differ", date_param)
                if cur.fetchone()[0] == 0:
                    cur.connection.rollback()
                    return False
            self._execute(cur, "warehouse_postgres/delete_date", date_param)
            self._execute(
                cur,
                "warehouse_postgres/publish_lists",
                {
                    "as_of_date": as_of_date,
                    "model": model,
                    "run_id": run_id,
                    "generated_at": datetime.now(UTC),
                },
            )
            self._execute(
                cur,
                "warehouse_postgres/prune_history",
                {"keep_from": keep_from(as_of_date, self.settings.history_days)},
            )
        return True

    def _copy(self, cur: psycopg.Cursor, lists: pa.Table) -> None:
        options = pacsv.WriteOptions(include_header=False)
        with cur.copy(sql("warehouse_postgres/copy_staging")) as copy:
            for batch in lists.to_batches(max_chunksize=COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, write_options=options)
                copy.write(buffer.getbuffer())

    def record_user_decay(self, run_id: str, as_of_date: date, table: pa.Table) -> None:
        """Replace run `run_id`'s rows of user_decay_params with `table`, over COPY."""
        n = table.num_rows
        rows = pa.table(
            {
                "run_id": pa.array([run_id] * n, pa.string()),
                "as_of_date": pa.array([as_of_date] * n, pa.date32()),
                "user_id": table["user_id"],
                "memory": table["memory"],
                "drift": table["drift"],
                "half_life_days": table["half_life_days"],
            }
        )
        options = pacsv.WriteOptions(include_header=False)
        with self._transaction() as cur:
            self._execute(cur, "warehouse_postgres/delete_user_decay", {"run_id": run_id})
            with cur.copy(sql("warehouse_postgres/copy_user_decay")) as copy:
                for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
                    buffer = io.BytesIO()
                    pacsv.write_csv(batch, buffer, write_options=options)
                    copy.write(buffer.getbuffer())

    def finish_run(self, run_id: str, outcome: RunOutcome) -> None:
        with self._transaction() as cur:
            self._execute(cur, "warehouse_postgres/finish_run", _finish_params(run_id, outcome))

    def query(self, query: str, params: dict[str, Any] | None = None) -> pa.Table:
        with self._transaction() as cur:
            cur.execute(to_psycopg(query), params or {})
            names = [d.name for d in cur.description or []]
            rows = cur.fetchall()
        return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})
