"""The nightly flow: sources -> ingest -> validate -> features -> plan-night -> train ->
evaluate -> gate -> publish-check -> export -> promote -> remember-published -> gx-audit
-> retention.

On an incremental night (model.refit_every_days > 1, decayrec.scoring.incremental) train,
evaluate and gate give way to score-incremental: the live lists' model is kept, the users
whose rows changed are re-scored and every other list is carried forward."""

import time
import uuid
from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from decayrec.config import AsOfDate, DecayrecConfig
from decayrec.report import log_message, plain, run_facts
from decayrec.warehouse.base import RunOutcome
from flows.guard import exclusive_publishing_run, record_failure, run_name
from flows.scoring import features_stage, train_lists
from tasks.artifacts import run_artifacts
from tasks.evaluate import evaluate
from tasks.export import (
    export,
    outcome_summary,
    record_failure_locally,
    record_run,
    start_run,
)
from tasks.gate import champion_gate, promote
from tasks.incremental import incremental_lists, night_outcome, plan, remember_published
from tasks.ingest import ingest
from tasks.publish_check import publish_check
from tasks.retention import prune_old_runs
from tasks.tune import configure, report_decay
from tasks.validate import gx_audit, validate


class StageFailed(RuntimeError):
    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"stage {stage} failed: {cause}")
        self.stage = stage
        self.cause = cause


class _Stages:
    """Times each stage and remembers which one failed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, task: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return task(*args)
        except Exception as exc:
            raise StageFailed(name, exc) from exc
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def _record_failure(config: DecayrecConfig, run_id: str, as_of: date, outcome: RunOutcome) -> None:
    """Record a failed run in the warehouse's history; when the warehouse cannot take it
    (start-run failed, or it is unreachable now), in <data_dir>/runs/<run_id>/."""
    reason = outcome.error or ""
    if outcome.failed_task != "start-run":
        try:
            record_run(config, run_id, outcome)
            return
        except Exception as exc:
            reason = str(exc)
    record_failure_locally(config, run_id, as_of, outcome, reason)


@flow(
    name="nightly",
    flow_run_name=run_name("nightly"),
    log_prints=True,
    on_failure=[record_failure],
    timeout_seconds=12 * 3600,
)
@exclusive_publishing_run  # late-start skip and the nightly lock (flows/guard.py)
def nightly(
    as_of: AsOfDate = None,
    config: DecayrecConfig = DecayrecConfig(),  # noqa: B008 - the UI form shows these defaults
) -> dict[str, Any]:
    """Publish every user's top-K list for `as_of`.

    Args:
        as_of: the as-of date: the lists are computed from the events before its midnight
            in config.timezone and published under this date. Empty: today in
            config.timezone (a scheduled run: the date of its slot)
        config: the run's settings; the model, the decay and k come first
    """
    started = time.time()
    as_of = as_of or config.today()
    as_of_time = config.as_of_time(as_of)
    run_id = str(flow_run.get_id() or uuid.uuid4())
    stage = _Stages()
    config, tune_id = stage("configure", configure, config)
    try:
        stage("start-run", start_run, config, run_id, as_of)
        staged = stage("ingest", ingest, config, run_id)
        loaded = stage("validate", validate, config, staged, run_id)
        # by user shards on Dask (orchestration.task_runner: dask, score_shards > 1)
        snapshot = stage("features", features_stage, config, as_of_time)
        # refit, or incremental: the kept model, changed users re-scored, lists carried
        night = stage("plan-night", plan, config, as_of)
        if night.refit:
            trained = stage("train", train_lists, config, snapshot, run_id)
        else:
            trained = stage("score-incremental", incremental_lists, config, night, snapshot, run_id)
        decay = stage(
            "decay-report", report_decay, config, snapshot, run_id, as_of, trained.run_dir
        )
        if night.refit:
            metrics = stage("evaluate", evaluate, config, as_of_time)
            # champion/challenger: `trained` becomes the lists to publish (evaluation/champion.py)
            trained, gate = stage(
                "gate", champion_gate, config, as_of_time, snapshot, trained, metrics, run_id
            )
        else:
            metrics, gate = night_outcome(config, night)
        # sanity bounds against the previous published date: failing lists stay unpublished
        checked = stage("publish-check", publish_check, config, as_of, snapshot, trained, gate)
        published = stage("export", export, config, as_of, trained, run_id, snapshot)
        stage("promote", promote, config, gate)
        # what the next night starts from (runs/<run_id>/published.json)
        stage(
            "remember-published",
            remember_published,
            *(config, run_id, as_of, snapshot, trained, night, gate),
        )
        # GX on the large clean batches it was deferred for; never fails the run
        audit = stage("gx-audit", gx_audit, config)
        # older runs' files (retention.keep_runs); never fails the run
        retention = stage(
            "retention", prune_old_runs, config, run_id, snapshot.snapshot_id, started
        )
    except StageFailed as failure:
        failed = RunOutcome(
            status="failed",
            stage_seconds=stage.seconds,
            failed_task=failure.stage,
            error=str(failure.cause)[:4000],
        )
        _record_failure(config, run_id, as_of, failed)
        raise failure.cause from None
    outcome = RunOutcome(
        status="succeeded",
        metrics={
            **metrics,
            "decay": plain({**decay, "tune_id": tune_id}),
            "gate": gate,
            "night": {"kind": night.kind, "reason": night.reason, **trained.night_stats()},
            "publish_check": checked,
            "gx_audit": audit,
            "retention": retention,
        },
        stage_seconds=stage.seconds,
        n_users=trained.n_users,
        n_rows=trained.n_rows,
        n_fallback_rows=trained.n_fallback_rows,
        published=published,
        snapshot_id=snapshot.snapshot_id,
        validation_paths=[b.validation_path for b in loaded],
    )
    record_run(config, run_id, outcome)
    facts = run_facts(
        config,
        run_id=run_id,
        as_of=as_of,
        model=trained.model,
        stage_seconds=stage.seconds,
        batches=loaded,
        metrics=outcome.metrics,
        n_users=trained.n_users,
        n_rows=trained.n_rows,
        n_fallback_rows=trained.n_fallback_rows,
        published=published,
    )
    # one record: a headline, the facts as JSON (and as `summary` for structured handlers)
    get_run_logger().info(log_message(facts), extra={"summary": facts})
    run_artifacts(config, run_id, outcome, loaded, trained.lists_path)
    return plain(
        {
            "run_id": run_id,
            "as_of": as_of.isoformat(),
            "batches": [b.__dict__ for b in loaded],
            **outcome_summary(outcome),
            "summary": facts,
        }
    )
