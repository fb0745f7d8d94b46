"""What wraps every publishing flow run: the late-start check, the run lock, and the
on_failure hook that records failures the flow body could not record itself."""

import functools
import inspect
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.logging import get_logger

from decayrec.config import DecayrecConfig, mask_url
from decayrec.warehouse import configured_warehouse
from decayrec.warehouse.base import RunOutcome, record_run_locally
from tasks.ops import LockUnavailable, RunRefused, exclusive_run

_EPOCH_END = datetime.max.replace(tzinfo=UTC)


def _config_of(value: Any) -> DecayrecConfig:
    if isinstance(value, DecayrecConfig):
        return value
    return DecayrecConfig.model_validate(value or {})


def scheduled_slot() -> datetime | None:
    """The slot of a deployment run (its expected start), None for a direct call."""
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if run is None or run.deployment_id is None or run.expected_start_time is None:
        return None
    return run.expected_start_time.astimezone(UTC)


def resolved_as_of(as_of: date | str | None, config: DecayrecConfig) -> date:
    """The as-of date a run uses: the one given; else, for a deployment run, the date of
    its scheduled slot in config.timezone (a run that starts a little late still
    publishes its night); else today in config.timezone."""
    if isinstance(as_of, str):
        return date.fromisoformat(as_of)
    if as_of is not None:
        return as_of
    slot = scheduled_slot()
    if slot is not None:
        return slot.astimezone(ZoneInfo(config.timezone)).date()
    return config.today()


def run_name(prefix: str) -> Callable[[], str]:
    """A flow's `flow_run_name`: `<prefix>-<the as-of date the run uses>`, e.g.
    nightly-2018-10-01, so the runs list and a backfill's graph show the date."""

    def name() -> str:
        ctx = FlowRunContext.get()
        parameters = dict(ctx.parameters or {}) if ctx else {}
        config = _config_of(parameters.get("config"))
        return f"{prefix}-{resolved_as_of(parameters.get('as_of'), config).isoformat()}"

    name.__qualname__ = name.__name__ = f"{prefix}_run_name"
    return name


def name_subflow_task_run() -> None:
    """A subflow run (a backfill's day) is tracked in its parent flow by a task run
    Prefect names after the flow (nightly-0, nightly-1, ...): give it the subflow run's
    own name (nightly-2018-09-28), so the parent's graph shows the dates."""
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if run is None or run.parent_task_run_id is None:
        return
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.set_task_run_name(run.parent_task_run_id, run.name)
    except Exception as exc:  # a name is never worth failing a run over
        get_logger("decayrec.hooks").warning("could not name the task run of %s: %s", run.name, exc)


def start_delay_hours(slot: datetime, now: datetime | None = None) -> float:
    return ((now or datetime.now(UTC)) - slot).total_seconds() / 3600.0


def _record_skip(config: DecayrecConfig, as_of: date, reason: str) -> dict[str, Any]:
    ctx = FlowRunContext.get()
    run_id = str(ctx.flow_run.id)
    warehouse = configured_warehouse(config)
    warehouse.ensure_schema()
    warehouse.start_run(run_id, as_of, str(config.model.name), config.model_dump(mode="json"))
    warehouse.finish_run(run_id, RunOutcome(status="skipped", error=reason))
    get_run_logger().warning("run %s for %s skipped: %s", run_id, as_of, reason)
    return {"run_id": run_id, "as_of": as_of.isoformat(), "status": "skipped", "error": reason}


def exclusive_publishing_run(fn: Any) -> Any:
    """Wrap a flow function `fn(as_of, config, ...)`:

    - a run with no as_of gets the date resolved_as_of gives it (a deployment run: the
      date of its scheduled slot in config.timezone, so a run that starts a little late
      still publishes its night; else today);
    - a subflow run (a backfill's day) names its task run in the parent after itself;
    - a deployment run starting more than orchestration.max_start_delay_hours after its
      slot records 'skipped' and returns (missed nights never pile up);
    - otherwise the run holds the nightly lock (tasks.ops.exclusive_run) while it runs:
      two runs started at once run one after the other, or the second is refused.
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        config = _config_of(bound.arguments["config"])
        bound.arguments["as_of"] = resolved_as_of(bound.arguments.get("as_of"), config)
        name_subflow_task_run()
        slot = scheduled_slot()
        if slot is not None:
            delay = start_delay_hours(slot)
            limit = config.orchestration.max_start_delay_hours
            if delay > limit:
                return _record_skip(
                    config,
                    bound.arguments["as_of"],
                    f"started {delay:.1f} h after its scheduled slot {slot.isoformat()} "
                    f"(orchestration.max_start_delay_hours = {limit:g})",
                )
        with exclusive_run(config):
            return fn(*bound.args, **bound.kwargs)

    return wrapper


def record_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """on_failure hook: a failed run whose row in recommendation_runs is missing or still
    'running' (refused by the lock, timed out, crashed outside a stage) is recorded as
    failed with the failing task and the message. Stage failures are recorded by the
    flow itself, with the stage's timings, and left as they are."""
    logger = get_logger("decayrec.hooks")
    try:
        parameters = dict(flow_run.parameters or {})
        config = _config_of(parameters.get("config"))
        as_of = resolved_as_of(parameters.get("as_of"), config)
        run_id = str(flow_run.id)
        error = state.result(raise_on_failure=False)
        if isinstance(error, LockUnavailable):  # the warehouse cannot take the record either
            url = config.resolved_warehouse_url
            outcome = RunOutcome(status="failed", failed_task="lock", error=str(error)[:4000])
            path = record_run_locally(config.data_dir, run_id, as_of, outcome, url)
            logger.error(
                "run %s failed and the warehouse %s could not record it; recorded in %s",
                run_id,
                mask_url(url),
                path,
            )
            return
        warehouse = configured_warehouse(config)
        warehouse.ensure_schema()
        rows = warehouse.query(
            "select status from recommendation_runs where run_id = $run_id", {"run_id": run_id}
        ).to_pylist()
        if rows and rows[0]["status"] != "running":
            return
        if not rows:
            warehouse.start_run(
                run_id, as_of, str(config.model.name), config.model_dump(mode="json")
            )
        failed_task = "lock" if isinstance(error, RunRefused) else _failed_task(flow_run.id)
        message = str(error) if isinstance(error, BaseException) else (state.message or "")
        warehouse.finish_run(
            run_id,
            RunOutcome(status="failed", failed_task=failed_task, error=message[:4000]),
        )
    except Exception:  # a hook must never hide the run's own failure
        logger.exception("could not record the failure of flow run %s", flow_run.id)


def _failed_task(flow_run_id: Any) -> str:
    """The name of the first failed or crashed task run of the flow run, else 'flow'."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(
                        type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
                    )
                ),
            )
    except Exception:
        return "flow"
    if not runs:
        return "flow"
    first = min(runs, key=lambda r: r.start_time or r.expected_start_time or _EPOCH_END)
    return first.name.rsplit("-", 1)[0] if "-" in first.name else first.name
