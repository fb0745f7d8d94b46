"""Warehouse writers: where the lists and the run history are published.

A warehouse is chosen by URL. `duckdb:///path/file.duckdb` is the embedded default.
Publishing an as-of date is one transaction: delete that date's rows, insert the new
ones, so readers see the complete old lists or the complete new ones, and a rerun
replaces a date rather than appending to it. When a rerun produces exactly the lists
already published, nothing is rewritten (the tables stay identical).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from decayrec.sqlfiles import connect, run_script, sql


class WarehouseError(RuntimeError):
    pass


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
    url: str

    def ensure_schema(self) -> None: ...

    def start_run(
        self, run_id: str, as_of_date: date, model: str, params: dict[str, Any]
    ) -> None: ...

    def publish(self, as_of_date: date, lists: pa.Table, run_id: str, model: str) -> bool: ...

    def finish_run(self, run_id: str, outcome: RunOutcome) -> None: ...

    def query(self, query: str, params: dict[str, Any] | None = None) -> pa.Table: ...


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


class DuckDBWarehouse:
    """The embedded warehouse: one DuckDB file, opened per operation so readers can
    open it between runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = duckdb_path(url)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return connect(self.path)

    def ensure_schema(self) -> None:
        con = self._connect()
        try:
            run_script(con, "warehouse/schema")
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
        """Swap in `lists` as the lists of `as_of_date`; False when they were already live."""
        con = self._connect()
        try:
            con.register("staged_lists", lists)
            con.execute("begin transaction")
            try:
                n_published = con.execute(
                    "select count(*) from recommendations where as_of_date = ?", [as_of_date]
                ).fetchall()[0][0]
                if n_published == lists.num_rows:
                    different = con.execute(
                        sql("warehouse/lists_differ"), {"as_of_date": as_of_date}
                    ).fetchall()[0][0]
                    if different == 0:
                        con.execute("rollback")
                        return False
                con.execute("delete from recommendations where as_of_date = ?", [as_of_date])
                con.execute(
                    sql("warehouse/publish_lists"),
                    {
                        "as_of_date": as_of_date,
                        "model": model,
                        "run_id": run_id,
                        "generated_at": datetime.now(UTC),
                    },
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
            con.execute(
                sql("warehouse/finish_run"),
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
        finally:
            con.close()

    def query(self, query: str, params: dict[str, Any] | None = None) -> pa.Table:
        con = connect(self.path, read_only=True)
        try:
            return con.sql(query, params=params or None).to_arrow_table()
        finally:
            con.close()


def duckdb_path(url: str) -> Path:
    """`duckdb:///relative/file.duckdb` or `duckdb:////absolute/file.duckdb` (as SQLAlchemy)."""
    prefix = "duckdb:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise WarehouseError(
            f"a DuckDB warehouse URL looks like duckdb:///path/file.duckdb, got {url!r}"
        )
    return Path(url[len(prefix) :])


def open_warehouse(url: str) -> Warehouse:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "duckdb":
        return DuckDBWarehouse(url)
    if scheme in ("postgresql", "postgres"):
        raise WarehouseError(
            "the PostgreSQL warehouse is not available in this version; use duckdb:///path"
        )
    raise WarehouseError(f"unsupported warehouse URL scheme {scheme!r} (expected duckdb:///...)")
