"""Prefect tasks: thin wrappers over plain functions of the decayrec package."""

from typing import Any

from decayrec.ingest import IngestError
from decayrec.warehouse import WarehouseError

# Errors in the data or the configuration give the same answer on a retry.
PERMANENT_ERRORS = (IngestError, WarehouseError, ValueError, KeyError, TypeError)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry I/O and other transient failures, not bad data."""
    try:
        state.result()
    except PERMANENT_ERRORS:
        return False
    except Exception:
        return True
    return False
