from datetime import date
from typing import Any

import pyarrow.parquet as pq
from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig, mask_url
from decayrec.lake.matrix import Snapshot
from decayrec.scoring.items import item_table
from decayrec.scoring.lists import TrainedLists
from decayrec.warehouse import configured_warehouse
from decayrec.warehouse.base import RunOutcome, record_run_locally, redact
from tasks import io_task
from tasks.ops import mark_crashed_runs, run_holder


@io_task("start-run")
def start_run(config: DecayrecConfig, run_id: str, as_of: date) -> None:
    """Create or upgrade the warehouse tables (migrations), mark 'crashed' the runs left
    'running' by dead processes (the caller holds the run lock), and record this run as
    running with its holder (host, pid, lock file) in params."""
    warehouse = configured_warehouse(config)
    warehouse.ensure_schema()
    mark_crashed_runs(config, warehouse, keep=run_id)
    params = {**config.model_dump(mode="json"), "holder": run_holder(config)}
    warehouse.start_run(run_id, as_of, config.model.name, params)


@io_task("export")
def export(
    config: DecayrecConfig,
    as_of: date,
    trained: TrainedLists,
    run_id: str,
    snapshot: Snapshot | None = None,
) -> bool:
    """Publish the lists of `as_of` atomically, with the items of the snapshot they were
    scored on (catalogue entries and figures, decayrec.scoring.items) in the same
    transaction; False when identical lists were already live."""
    warehouse = configured_warehouse(config)
    items = None if snapshot is None else item_table(config, snapshot)
    lists = pq.read_table(trained.lists_path)
    return warehouse.publish(as_of, lists, run_id, trained.model, items=items)


@io_task("record-run")
def record_run(config: DecayrecConfig, run_id: str, outcome: RunOutcome) -> None:
    """Write the run's outcome (success with figures, or failure with its task) to the history."""
    configured_warehouse(config).finish_run(run_id, outcome)


@task(name="record-run-locally")
def record_failure_locally(
    config: DecayrecConfig, run_id: str, as_of: date, outcome: RunOutcome, reason: str
) -> str:
    """The record of a failed run that the warehouse could not take (unreachable): written to
    <data_dir>/runs/<run_id>/run_record.json, password masked."""
    url = config.resolved_warehouse_url
    path = record_run_locally(config.data_dir, run_id, as_of, outcome, url)
    get_run_logger().error(
        "run %s failed and the warehouse %s could not record it (%s); recorded in %s",
        run_id,
        mask_url(url),
        redact(reason, url),
        path,
    )
    return str(path)


def outcome_summary(outcome: RunOutcome) -> dict[str, Any]:
    return {k: v for k, v in outcome.__dict__.items() if v is not None}
