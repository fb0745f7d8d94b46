"""Prefect tasks: thin wrappers over plain functions of the decayrec package."""

from collections.abc import Callable
from typing import Any

from prefect import task

from decayrec.evaluation.publish_check import PublishCheckFailed
from decayrec.lake.ingest import IngestError
from decayrec.warehouse.errors import WarehouseError

# Errors in the data or the configuration give the same answer on a retry.
PERMANENT_ERRORS = (
    IngestError,
    WarehouseError,
    PublishCheckFailed,
    ValueError,
    KeyError,
    TypeError,
)


# Upper bounds (seconds) per kind of task: a hung stage fails its run (recorded by the
# flow) instead of blocking the next night's run behind the nightly lock.
TIMEOUTS = {
    "io": 1800,  # ingest, warehouse writes
    "validate": 3600,
    "features": 3600,
    "train": 4 * 3600,
    "score": 2 * 3600,
    "evaluate": 4 * 3600,
    "small": 600,  # configure, reports, artifacts
}


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry I/O and other transient failures, not bad data."""
    try:
        state.result()
    except PERMANENT_ERRORS:
        return False
    except Exception:
        return True
    return False


def io_task(name: str) -> Callable[[Callable[..., Any]], Any]:
    """The decorator of a task that reads the sources or reads or writes the warehouse:
    retried twice (after 2 s, then 10 s) when the failure is transient (retry_transient),
    within the I/O timeout."""
    return task(
        name=name,
        retries=2,
        retry_delay_seconds=[2, 10],
        retry_condition_fn=retry_transient,
        timeout_seconds=TIMEOUTS["io"],
    )
