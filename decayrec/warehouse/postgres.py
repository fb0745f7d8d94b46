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

import io
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql as pgsql

from decayrec.config import WarehouseConfig, check_identifier, mask_url
from decayrec.sqlfiles import sql
from decayrec.warehouse.base import Warehouse, redact
from decayrec.warehouse.errors import (
    WarehouseConnectionLost,
    WarehouseError,
    WarehouseUnavailable,
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


def array_literals(lists: pa.ChunkedArray) -> pa.Array:
    """A list<string> column as PostgreSQL array literals ({"a","b"}; `"` and `\\`
    escaped), built with Arrow compute; null stays null."""
    lists = lists.combine_chunks()
    flat = pc.list_flatten(lists)
    flat = pc.replace_substring(flat, "\\", "\\\\")
    flat = pc.replace_substring(flat, '"', '\\"')
    quoted = pc.binary_join_element_wise('"', flat, '"', "")
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))).astype(np.int32))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, quoted), ",")
    literal = pc.binary_join_element_wise("{", joined, "}", "")
    return pc.if_else(pc.is_null(lists), pa.scalar(None, pa.string()), literal)


class PostgresWarehouse(Warehouse):
    dialect = "postgresql"
    sql_folder = "warehouse_postgres"

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

    def connect(self) -> psycopg.Connection:
        """A connection of its own, in the configured schema; connecting is retried
        (`connect_retries`, then WarehouseUnavailable). Each operation opens one; a caller
        may hold one for a session-level lock (tasks.ops.warehouse_lock)."""
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
        con = self.connect()
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

    def _execute(
        self, cur: psycopg.Cursor, name: str, params: dict[str, Any] | None = None
    ) -> psycopg.Cursor:
        if params is None:  # psycopg reads `%` only when there are parameters
            return cur.execute(sql(f"{self.sql_folder}/{name}"))
        return cur.execute(to_psycopg(sql(f"{self.sql_folder}/{name}")), params)

    @contextmanager
    def _publishing(self, lists: pa.Table, items: pa.Table | None) -> Iterator[psycopg.Cursor]:
        """Under the publish lock: the lists (and the items) COPYed into temporary
        staging tables; because_items travels as array literals (CSV has no lists)."""
        with self._transaction() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", [PUBLISH_LOCK])
            self._execute(cur, "create_staging")
            column = lists.schema.get_field_index("because_items")
            literals = array_literals(lists["because_items"])
            self._copy(cur, "copy_staging", lists.set_column(column, "because_items", literals))
            cur.execute("analyze staged_lists")
            if items is not None:
                self._execute(cur, "create_staged_items")
                self._copy(cur, "copy_items", items)
            yield cur

    @contextmanager
    def _migrating(self) -> Iterator[psycopg.Cursor]:
        """One transaction for all the migrations, under the migration lock, in the
        configured schema (created if need be)."""
        with self._transaction() as cur:
            if self.settings.schema_name is not None:
                cur.execute(
                    pgsql.SQL("create schema if not exists {}").format(
                        pgsql.Identifier(self.settings.schema_name)
                    )
                )
            cur.execute("select pg_advisory_xact_lock(%s)", [MIGRATE_LOCK])
            yield cur

    def _copy(self, cur: psycopg.Cursor, name: str, table: pa.Table) -> None:
        """COPY `table` with `sql/warehouse_postgres/<name>.sql`, as CSV written by Arrow in
        batches (never row by row)."""
        options = pacsv.WriteOptions(include_header=False)
        with cur.copy(sql(f"{self.sql_folder}/{name}")) as copy:
            for batch in table.to_batches(max_chunksize=COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, write_options=options)
                copy.write(buffer.getbuffer())

    def record_user_decay(self, run_id: str, as_of_date: date, table: pa.Table) -> None:
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
        with self._transaction() as cur:
            self._execute(cur, "delete_user_decay", {"run_id": run_id})
            self._copy(cur, "copy_user_decay", rows)

    def query(self, query: str, params: dict[str, Any] | None = None) -> pa.Table:
        with self._transaction() as cur:
            cur.execute(to_psycopg(query), params or {})
            names = [d.name for d in cur.description or []]
            rows = cur.fetchall()
        return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})
