"""The reexport flow: publish an as-of date's lists again from a stored model and its
snapshot (models/<run_id>/model.pt + snapshots/<snapshot_id>/), without retraining; with
another k, say, or after the published lists were lost. Only the runs retention keeps
(retention.keep_runs, the champion) have their files."""

import uuid
from datetime import date
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from decayrec.config import DecayrecConfig
from decayrec.lake.matrix import read_snapshot, snapshot_problem
from decayrec.scoring.sharding import FittedModel
from decayrec.sqlfiles import sql
from decayrec.warehouse import configured_warehouse
from decayrec.warehouse.base import RunOutcome
from flows.guard import exclusive_publishing_run, record_failure
from flows.scoring import score_sharded
from tasks.artifacts import run_artifacts
from tasks.export import export, outcome_summary, record_run, start_run


class NothingToReexport(ValueError):
    """No stored model and snapshot for the as-of date (or the run asked for)."""


def stored_run(config: DecayrecConfig, as_of: date, source_run_id: str | None) -> dict[str, Any]:
    """The run whose model is republished: `source_run_id`, else the newest succeeded run
    of `as_of` with a snapshot."""
    warehouse = configured_warehouse(config)
    warehouse.ensure_schema()
    if source_run_id:
        rows = warehouse.query(sql("ops/run_record"), {"run_id": source_run_id}).to_pylist()
    else:
        rows = warehouse.query(sql("ops/latest_succeeded_run"), {"as_of_date": as_of}).to_pylist()
    if not rows or not rows[0].get("snapshot_id"):
        which = f"run {source_run_id}" if source_run_id else f"a succeeded run of {as_of}"
        raise NothingToReexport(
            f"no stored model for {which} in the warehouse: run the nightly flow (or a "
            "backfill) for that date first"
        )
    return rows[0]


@flow(
    name="reexport",
    flow_run_name="reexport-{as_of}",
    log_prints=True,
    on_failure=[record_failure],
    timeout_seconds=6 * 3600,
)
@exclusive_publishing_run
def reexport(
    as_of: date,
    config: DecayrecConfig = DecayrecConfig(),  # noqa: B008 - the UI form shows these defaults
    source_run_id: str | None = None,
) -> dict[str, Any]:
    """Republish the lists of `as_of` from the stored model of a run, without retraining.

    Args:
        as_of: the as-of date whose lists are published again
        config: k, shards and the warehouse come from here; the model and the snapshot
            are the stored ones
        source_run_id: the run whose model.pt is used (default: the newest succeeded run
            of `as_of`)
    """
    logger = get_run_logger()
    run_id = str(flow_run.get_id() or uuid.uuid4())
    source = stored_run(config, as_of, source_run_id)
    src_id = str(source["run_id"])
    # the registry holds each run's model (runs/<id>/model.pt: data dirs of older versions)
    model_path = Path(config.data_dir) / "models" / src_id / "model.pt"
    if not model_path.exists():
        model_path = Path(config.data_dir) / "runs" / src_id / "model.pt"
    meta = Path(config.data_dir) / "snapshots" / str(source["snapshot_id"]) / "snapshot.json"
    for path in (model_path, meta):
        if not path.exists():
            raise NothingToReexport(
                f"run {src_id}: {path} is missing (retention keeps the files of the last "
                f"{config.retention.keep_runs} runs and the champion's)"
            )
    snapshot = read_snapshot(meta, config.data_dir)
    problem = snapshot_problem(snapshot)
    if problem is not None:
        raise NothingToReexport(f"run {src_id}: its snapshot cannot be used: {problem}")
    logger.info("re-exporting %s from run %s (model %s)", as_of, src_id, model_path)
    start_run(config, run_id, as_of)
    run_dir = Path(config.data_dir) / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    fitted = FittedModel(str(run_dir), str(model_path), str(source["model"]), "stored", 0.0)
    trained = score_sharded(config, snapshot, fitted)
    published = export(config, as_of, trained, run_id, snapshot)
    outcome = RunOutcome(
        status="succeeded",
        metrics={"reexport_of": src_id},
        n_users=trained.n_users,
        n_rows=trained.n_rows,
        n_fallback_rows=trained.n_fallback_rows,
        published=published,
        snapshot_id=snapshot.snapshot_id,
    )
    record_run(config, run_id, outcome)
    run_artifacts(config, run_id, outcome, [], trained.lists_path)
    return {"run_id": run_id, "as_of": as_of.isoformat(), **outcome_summary(outcome)}
