from datetime import date
from typing import Any

import pyarrow.parquet as pq
from prefect import task

from decayrec.config import DecayrecConfig
from decayrec.train import TrainedLists
from decayrec.warehouse import RunOutcome, open_warehouse
from tasks import retry_transient


@task(name="start-run", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient)
def start_run(config: DecayrecConfig, run_id: str, as_of: date) -> None:
    """Create the warehouse tables if needed and record the run as running."""
    warehouse = open_warehouse(config.resolved_warehouse_url)
    warehouse.ensure_schema()
    warehouse.start_run(run_id, as_of, config.model.name, config.model_dump(mode="json"))


@task(name="export", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient)
def export(config: DecayrecConfig, as_of: date, trained: TrainedLists, run_id: str) -> bool:
    """Publish the lists of `as_of` atomically; False when identical lists were already live."""
    warehouse = open_warehouse(config.resolved_warehouse_url)
    return warehouse.publish(as_of, pq.read_table(trained.lists_path), run_id, trained.model)


@task(name="record-run", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient)
def record_run(config: DecayrecConfig, run_id: str, outcome: RunOutcome) -> None:
    """Write the run's outcome (success with figures, or failure with its task) to the history."""
    open_warehouse(config.resolved_warehouse_url).finish_run(run_id, outcome)


def outcome_summary(outcome: RunOutcome) -> dict[str, Any]:
    return {k: v for k, v in outcome.__dict__.items() if v is not None}
