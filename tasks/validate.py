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
        by = ", ".join(f"{n} by {name}" for name, n in result.quarantined_by_expectation.items())
        logger.info(
            "validate %s: %d rows read, %d accepted, %d quarantined%s",
            result.file,
            result.rows_read,
            result.rows_accepted,
            result.rows_quarantined,
            f" ({by})" if by else "",
        )
        if result.message:
            logger.warning(result.message)
    return results
