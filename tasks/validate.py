from typing import Any

from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.lake.ingest import BatchResult, load_batches
from decayrec.lake.staging import StagedBatch
from decayrec.lake.validate import audit_deferred
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


@task(name="gx-audit", timeout_seconds=TIMEOUTS["validate"])
def gx_audit(config: DecayrecConfig) -> dict[str, Any]:
    """After the publish: Great Expectations on the samples of the large clean batches whose
    GX run was deferred, tonight's and any an earlier run left when it failed after
    validating them (decayrec.lake.validate.audit_deferred). The lists are published by
    now on the SQL checks' verdict over every row: a rejection or an error here is logged
    as an error and returned, it never fails the run."""
    logger = get_run_logger()
    try:
        audit = audit_deferred(config)
    except Exception as exc:
        logger.error("gx-audit: the deferred Great Expectations runs failed: %s", exc)
        return {"error": str(exc)[:500]}
    for message in audit.failed:
        logger.error("gx-audit: %s", message)
    if audit.batches:
        logger.info("gx-audit: %d deferred batch(es) judged by Great Expectations", audit.batches)
    return audit.summary()
