"""Run coordination in Prefect: global concurrency limits created on demand, a file lock
for runs that share a data directory on one machine, and the training fault drill."""

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from decayrec.config import DecayrecConfig
from decayrec.device import pick_device
from decayrec.features import Snapshot

NIGHTLY_LIMIT = "decayrec-nightly"  # one nightly (or re-export) publishing at a time
GPU_LIMIT = "decayrec-gpu"  # one training on the GPU at a time


class RunRefused(RuntimeError):
    """Another run holds the lock and did not release it within the wait."""


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


@contextmanager
def exclusive_run(config: DecayrecConfig, name: str = NIGHTLY_LIMIT) -> Iterator[None]:
    """Hold the run lock: a file lock in data_dir (runs on this machine, with or without
    a Prefect server) and the global concurrency limit `name` (runs anywhere that share
    the Prefect API). Waits up to orchestration.lock_wait_seconds, then RunRefused."""
    wait = config.orchestration.lock_wait_seconds
    started = time.monotonic()
    with file_lock(Path(config.data_dir) / "locks" / f"{name}.lock", wait, name):
        ensure_limit(name)
        left = max(wait - (time.monotonic() - started), 0.001)
        try:
            with concurrency(name, occupy=1, timeout_seconds=left, strict=True):
                yield
        except TimeoutError as exc:
            raise RunRefused(
                f"{name}: the global concurrency limit stayed taken for {wait:g} s "
                "(orchestration.lock_wait_seconds)"
            ) from exc


def training_slot(config: DecayrecConfig) -> Any:
    """Serialise GPU training across runs and flows (CPU training is not limited)."""
    if pick_device(config.model.device).type != "cuda":
        return nullcontext()
    ensure_limit(GPU_LIMIT)
    return concurrency(GPU_LIMIT, occupy=1, strict=True)


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
