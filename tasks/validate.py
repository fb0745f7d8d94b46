from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.lake.ingest import BatchResult, load_batches
from decayrec.lake.staging import StagedBatch
from tasks import TIMEOUTS


@task(name="validate", timeout_seconds=TIMEOUTS["validate"])
def validate(config: DecayrecConfig, batches: list[StagedBatch], run_id: str) -> list[BatchResult]:
    """Validate each staged batch (GX), quarantine bad rows, append good rows to `events`;
    rows that conflict with loaded events (same key, another value) are counted and logged."""
    results = load_batches(config, batches, run_id)
    logger = get_run_logger()
    for result in results:
        if result.message:
            logger.warning(result.message)
    return results
