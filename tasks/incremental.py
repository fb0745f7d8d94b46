"""The incremental nightly's tasks (decayrec.scoring.incremental): plan the night, score
it with the kept model, and leave the published lists' state for the next night."""

from datetime import date
from typing import Any

from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.evaluation.champion import KEEP, PROMOTE, Registry
from decayrec.evaluation.retention import champion_model
from decayrec.lake.matrix import Snapshot
from decayrec.scoring.incremental import (
    Night,
    plan_night,
    published_state,
    read_state,
    write_state,
)
from decayrec.scoring.incremental import incremental_lists as score_incrementally
from decayrec.scoring.lists import TrainedLists
from decayrec.sqlfiles import sql
from decayrec.warehouse import configured_warehouse
from tasks import TIMEOUTS, io_task


@io_task("plan-night")
def plan(config: DecayrecConfig, as_of: date) -> Night:
    """Refit or incremental tonight (decayrec.scoring.incremental.plan_night); the live
    run's state is read only when model.refit_every_days > 1."""
    previous, why_none, champion_id = None, "", None
    if config.model.refit_every_days > 1:
        live = configured_warehouse(config).query(sql("ops/live_run")).to_pylist()
        if len(live) == 1:
            previous, why_none = read_state(config, live[0]["run_id"])
        elif live:
            why_none = "the live lists were written by more than one run"
        try:  # read without setting a broken pointer aside: the gate does that
            champion_id, _ = champion_model(config.data_dir)
        except ValueError as exc:
            get_run_logger().warning("plan-night: %s", exc)
    night = plan_night(config, as_of, previous, why_none, champion_id)
    get_run_logger().info("night: %s (%s)", night.kind, night.reason)
    return night


@task(name="score-incremental", timeout_seconds=TIMEOUTS["score"])
def incremental_lists(
    config: DecayrecConfig, night: Night, snapshot: Snapshot, run_id: str
) -> TrainedLists:
    """The kept model's lists: changed users re-scored, the other lists carried forward."""
    record = Registry(config.data_dir).get(night.previous.model_id)
    trained = score_incrementally(config, record, snapshot, night, run_id)
    get_run_logger().info("%s in %.1f s", trained.night_summary(), trained.score_seconds)
    return trained


def night_outcome(config: DecayrecConfig, night: Night) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics and gate decision of an incremental night: no backtest, no gate (the
    model is the champion the last refit night's gate kept)."""
    skipped = {"skipped": f"incremental night: the model is not refitted ({night.reason})"}
    metrics = {protocol: skipped for protocol in config.evaluation.protocols}
    gate = {"decision": "kept", "reason": f"incremental night: {night.reason}"}
    return metrics, gate


@task(name="remember-published", timeout_seconds=TIMEOUTS["small"])
def remember_published(
    config: DecayrecConfig,
    run_id: str,
    as_of: date,
    snapshot: Snapshot,
    trained: TrainedLists,
    night: Night,
    gate: dict[str, Any],
) -> str:
    """Write runs/<run_id>/published.json: what the next incremental night starts from.
    The lists are published by now: a failure is a warning (the next night refits)."""
    if night.refit:
        chosen = {PROMOTE: gate.get("challenger_id"), KEEP: gate.get("champion_id")}
        model_id = chosen.get(gate.get("decision"))
    else:
        model_id = night.previous.model_id
    state = published_state(config, night, trained, model_id, run_id, as_of, snapshot)
    try:
        return str(write_state(config, state))
    except OSError as exc:
        get_run_logger().warning("the next night will refit: %s", exc)
        return ""
