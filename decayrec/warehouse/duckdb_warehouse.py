"""The embedded warehouse: one DuckDB file (`duckdb:///path/file.duckdb`), opened per
operation so readers can open it between runs. Its SQL is `sql/warehouse/`; the lists
are staged by registering the Arrow table on the connection."""

import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from decayrec.config import WarehouseConfig
from decayrec.sqlfiles import connect
from decayrec.warehouse.base import Warehouse
from decayrec.warehouse.errors import WarehouseError, WarehouseUnavailable


class DuckDBWarehouse(Warehouse):
    dialect = "duckdb"
    sql_folder = "warehouse"

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

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    @staticmethod
    @contextmanager
    def _atomic(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on `con`: committed when the block ends, rolled back when it
        raises."""
        con.execute("begin transaction")
        try:
            yield con
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise

    @contextmanager
    def _transaction(
        self, staged: Mapping[str, pa.Table] | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection, one transaction: committed when the block ends, rolled back
        when it raises, the connection closed. The tables of `staged` read under their
        names; they are registered before the transaction begins (a failed registration
        would abort it)."""
        with self._connection() as con:
            for name, table in (staged or {}).items():
                _register(con, name, table)
            with self._atomic(con):
                yield con

    def _publishing(
        self, lists: pa.Table, items: pa.Table | None
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        staged = {"staged_lists": lists}
        if items is not None:
            staged["staged_items"] = items
        return self._transaction(staged)

    def _migrating(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._connection()

    def _migration(
        self, cur: duckdb.DuckDBPyConnection
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._atomic(cur)  # each migration in its own transaction

    def record_user_decay(self, run_id: str, as_of_date: date, table: pa.Table) -> None:
        with self._transaction({"staged_user_decay": table}) as con:
            self._execute(con, "delete_user_decay", {"run_id": run_id})
            self._execute(con, "publish_user_decay", {"run_id": run_id, "as_of_date": as_of_date})

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


def duckdb_path(url: str) -> Path:
    """`duckdb:///relative/file.duckdb` or `duckdb:////absolute/file.duckdb` (as SQLAlchemy)."""
    prefix = "duckdb:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise WarehouseError(
            f"a DuckDB warehouse URL looks like duckdb:///path/file.duckdb, got {url!r}"
        )
    return Path(url[len(prefix) :])
