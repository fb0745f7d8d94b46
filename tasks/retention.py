from typing import Any

from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.evaluation.retention import RunFiles, prune
from decayrec.sqlfiles import sql
from decayrec.warehouse import configured_warehouse
from tasks import TIMEOUTS


@task(name="retention", timeout_seconds=TIMEOUTS["small"])
def prune_old_runs(
    config: DecayrecConfig, run_id: str, snapshot_id: str | None, started: float
) -> dict[str, Any]:
    """After a successful publish: delete the files of the runs retention does not keep
    (decayrec.evaluation.retention). The lists are published by now: a failure here is
    logged as a warning and returned, it never fails the run."""
    logger = get_run_logger()
    if not config.retention.enabled:
        return {"enabled": False}
    try:
        rows = configured_warehouse(config).query(sql("ops/run_files")).to_pylist()
        runs = [RunFiles(r["run_id"], r["snapshot_id"], bool(r["live"])) for r in rows]
        pruned = prune(
            config.data_dir, runs, config.retention.keep_runs, run_id, snapshot_id, started
        )
    except Exception as exc:
        logger.warning("retention: nothing pruned: %s", exc)
        return {"error": str(exc)[:500]}
    logger.info("retention: %s", pruned.summary())
    return {
        "keep_runs": config.retention.keep_runs,
        "kept_runs": pruned.kept_runs,
        "pruned_runs": pruned.runs,
        "pruned_snapshots": pruned.snapshots,
        "pruned_checkpoints": pruned.checkpoints,
        "bytes_freed": pruned.bytes_freed,
    }
