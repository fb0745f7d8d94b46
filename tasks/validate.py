from prefect import task

from decayrec.config import DecayrecConfig
from decayrec.ingest import BatchResult, StagedBatch, load_batches
from tasks import TIMEOUTS


@task(name="validate", timeout_seconds=TIMEOUTS["validate"])
def validate(config: DecayrecConfig, batches: list[StagedBatch], run_id: str) -> list[BatchResult]:
    """Validate each staged batch (GX), quarantine bad rows, append good rows to `events`."""
    return load_batches(config, batches, run_id)
