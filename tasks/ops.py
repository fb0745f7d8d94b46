"""Run coordination: a file lock for runs that share a data directory on one machine
(freed by the OS when its holder dies), leased Prefect global concurrency limits on a
Prefect server of its own, runs of dead processes marked crashed, and the training fault
drill."""

import contextlib
import fcntl
import hashlib
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from decayrec.config import DecayrecConfig
from decayrec.lake.matrix import Snapshot
from decayrec.models.device import pick_device

NIGHTLY_LIMIT = "decayrec-nightly"  # one nightly (or re-export) publishing at a time
GPU_LIMIT = "decayrec-gpu"  # one training on the GPU at a time


class RunRefused(RuntimeError):
    """Another run holds the lock and did not release it within the wait."""


class LockUnavailable(RuntimeError):
    """The warehouse could not be reached to take its run lock (the message says why)."""


class InjectedFault(RuntimeError):
    """A failure injected on purpose (orchestration.fault_train_once)."""


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit `name` if the Prefect API does not have it
    (a missing limit would otherwise be skipped with a warning)."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit)
                )
            except ObjectAlreadyExists:
                pass


@contextmanager
def file_lock(path: Path, wait_seconds: float, what: str) -> Iterator[None]:
    """An exclusive flock on `path`, waited for up to `wait_seconds` (then RunRefused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunRefused(
                        f"{what}: another run holds {path} and did not finish within "
                        f"{wait_seconds:g} s (orchestration.lock_wait_seconds)"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_path(config: DecayrecConfig, name: str = NIGHTLY_LIMIT) -> Path:
    """The run lock's file: data_dir/locks/<name>.lock."""
    return (Path(config.data_dir) / "locks" / f"{name}.lock").resolve()


def shared_prefect_api() -> bool:
    """True when the Prefect API is a server of its own (PREFECT_API_URL set, not the CLI's
    temporary server): its repossessor service frees the slot of a dead holder once the
    lease expires. A temporary server (the CLI's, or the one Prefect starts itself) runs
    no such service, and forgets its leases when it stops, so a slot taken there by a
    killed run stays taken for good in the Prefect database (~/.prefect)."""
    from prefect.settings import get_current_settings

    from decayrec.process import temporary_api_url

    url = get_current_settings().api.url
    return bool(url) and url != temporary_api_url()


@contextmanager
def exclusive_run(config: DecayrecConfig, name: str = NIGHTLY_LIMIT) -> Iterator[None]:
    """Hold the run lock. Waits up to orchestration.lock_wait_seconds, then RunRefused.

    - The primary guard is an flock on data_dir/locks/<name>.lock, held by this process:
      the OS frees it when the process dies, however it dies (kill -9 included).
    - Then the warehouse's lock (warehouse_lock), so runs with different data dirs but
      one warehouse never publish at once either; freed the same way when the process
      dies.
    - On a Prefect server of its own (shared_prefect_api) the run also holds a slot of
      the global concurrency limit `name` (runs on other machines sharing the API), as a
      lease of orchestration.lock_lease_seconds that this process renews while it runs;
      the server frees the slot of a killed run when its lease expires. On a temporary
      server the slot is not taken: the file lock already serialises the runs of this
      machine, and the temporary server would never free the slot of a killed run.
    """
    wait = config.orchestration.lock_wait_seconds
    started = time.monotonic()
    with contextlib.ExitStack() as held:
        held.enter_context(file_lock(lock_path(config, name), wait, name))
        left = max(wait - (time.monotonic() - started), 0.0)
        held.enter_context(warehouse_lock(config, left, name))
        if not shared_prefect_api():
            yield
            return
        ensure_limit(name)
        left = max(wait - (time.monotonic() - started), 0.001)
        try:
            with concurrency(
                name,
                occupy=1,
                timeout_seconds=left,
                lease_duration=config.orchestration.lock_lease_seconds,
                strict=True,
            ):
                yield
        except TimeoutError as exc:
            raise RunRefused(
                f"{name}: the global concurrency limit stayed taken for {wait:g} s "
                "(orchestration.lock_wait_seconds)"
            ) from exc


def warehouse_lock_key(schema: str | None, name: str = NIGHTLY_LIMIT) -> int:
    """The PostgreSQL advisory lock key of run lock `name` on a warehouse schema (None:
    the connection's search_path): a signed 64-bit integer from md5."""
    digest = hashlib.md5(f"decayrec:{name}:{schema or ''}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def warehouse_lock(
    config: DecayrecConfig, wait_seconds: float, name: str = NIGHTLY_LIMIT
) -> Iterator[None]:
    """Hold the run lock of the warehouse itself, waiting up to `wait_seconds` (then
    RunRefused naming the warehouse, password masked).

    - DuckDB: an flock on `<warehouse file>.lock`, beside the file.
    - PostgreSQL: a session-level advisory lock keyed on warehouse.schema_name
      (warehouse_lock_key), on a connection of its own kept open while the block runs;
      the server frees it when that session ends, the process's death included.
    """
    from decayrec.config import mask_url
    from decayrec.warehouse import configured_warehouse
    from decayrec.warehouse.errors import WarehouseUnavailable

    warehouse = configured_warehouse(config)
    if warehouse.dialect == "duckdb":
        path = Path(f"{warehouse.path.resolve()}.lock")
        with file_lock(path, wait_seconds, f"{name} on warehouse {mask_url(warehouse.url)}"):
            yield
        return
    key = warehouse_lock_key(config.warehouse.schema_name, name)
    try:
        con = warehouse.connect()
    except WarehouseUnavailable as exc:
        raise LockUnavailable(f"{name}: cannot take the run lock: {exc}") from None
    try:
        con.autocommit = True
        deadline = time.monotonic() + wait_seconds
        while not con.execute("select pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
            if time.monotonic() >= deadline:
                schema = config.warehouse.schema_name or "its search_path schema"
                raise RunRefused(
                    f"{name}: another run holds the run lock of warehouse {warehouse.url} "
                    f"(schema {schema}, advisory lock {key}) and did not finish within "
                    f"{wait_seconds:g} s (orchestration.lock_wait_seconds)"
                )
            time.sleep(0.5)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                con.execute("select pg_advisory_unlock(%s)", [key])
    finally:
        con.close()


@contextmanager
def training_slot(config: DecayrecConfig) -> Iterator[None]:
    """Serialise GPU training across runs and flows (CPU training is not limited): a
    machine-wide file lock, plus the leased global concurrency slot on a Prefect server
    of its own (see exclusive_run)."""
    if pick_device(config.model.device).type != "cuda":
        yield
        return
    machine_lock = Path(tempfile.gettempdir()) / "decayrec-locks" / f"{GPU_LIMIT}.lock"
    with file_lock(machine_lock, math.inf, GPU_LIMIT):
        if not shared_prefect_api():
            yield
            return
        ensure_limit(GPU_LIMIT)
        lease = config.orchestration.lock_lease_seconds
        with concurrency(GPU_LIMIT, occupy=1, lease_duration=lease, strict=True):
            yield


def run_holder(config: DecayrecConfig) -> dict[str, Any]:
    """Who holds a run (stored in its row's params as 'holder'): the host, the process
    and the lock file it holds while the run is running."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "lock": str(lock_path(config))}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_free(path: Path) -> bool:
    """Whether nobody holds an flock on `path` (a missing file is free)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def dead_holder_reason(holder: dict[str, Any], own_lock: Path) -> str | None:
    """Why the process that held a run is dead, or None when it may be alive (another
    host: not knowable from here). Called while holding `own_lock`."""
    host, pid, lock = holder.get("host"), holder.get("pid"), holder.get("lock")
    if host != socket.gethostname() or not isinstance(pid, int) or not lock:
        return None
    if not _pid_alive(pid):
        return f"its process {pid} on {host} is gone"
    if Path(lock) == own_lock:
        if pid == os.getpid():
            return f"its process {pid} on {host} (this one) no longer runs it"
        return f"its process {pid} on {host} no longer holds {lock} (this run holds it)"
    if _lock_free(Path(lock)):
        return f"its process {pid} on {host} no longer holds {lock}"
    return None


def mark_crashed_runs(config: DecayrecConfig, warehouse: Any, keep: str = "") -> list[str]:
    """Mark 'crashed' (with the reason) the runs of this warehouse left 'running' by a
    process that died (kill -9, power loss): the runs this machine can tell are dead.
    Call while holding the run lock; the run `keep` (the caller's) is left alone.
    Returns the run ids marked."""
    from decayrec.sqlfiles import sql
    from decayrec.warehouse.base import RunOutcome

    own_lock = lock_path(config)
    crashed = []
    for row in warehouse.query(sql("ops/running_runs")).to_pylist():
        if row["run_id"] == keep:
            continue
        params = row["params"]
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except ValueError:
                continue
        holder = (params or {}).get("holder")
        if not isinstance(holder, dict):
            continue
        reason = dead_holder_reason(holder, own_lock)
        if reason is None:
            continue
        message = f"crashed: the run was left 'running' and {reason}; found by a later run"
        warehouse.finish_run(row["run_id"], RunOutcome(status="crashed", error=message))
        _logger().warning("run %s marked crashed: %s", row["run_id"], reason)
        crashed.append(row["run_id"])
    return crashed


def _logger() -> Any:
    try:
        return get_run_logger()
    except Exception:  # outside a flow or task run
        from prefect.logging import get_logger

        return get_logger("decayrec.ops")


def maybe_inject_train_fault(config: DecayrecConfig, snapshot: Snapshot) -> None:
    """orchestration.fault_train_once: fail the first training on this snapshot."""
    if not config.orchestration.fault_train_once:
        return
    marker = Path(config.data_dir) / "faults" / f"train-{snapshot.snapshot_id}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("injected once\n")
    get_run_logger().warning("fault drill: failing this training once (%s)", marker)
    raise InjectedFault(f"injected training failure on snapshot {snapshot.snapshot_id}")
