from datetime import date, datetime
from typing import Any

import pyarrow.parquet as pq
from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.evaluation.plots import decay_report
from decayrec.evaluation.tune import TuneResult, apply_latest_winner, describe_config, tune
from decayrec.lake.features import event_type_ages
from decayrec.lake.matrix import Snapshot
from decayrec.warehouse import configured_warehouse
from tasks import TIMEOUTS


@task(name="configure", timeout_seconds=TIMEOUTS["small"])
def configure(config: DecayrecConfig) -> tuple[DecayrecConfig, str | None]:
    """The run's config: the newest applied tuning winner's model and decay, if any and
    wanted; logs one line when it differs from the configured settings."""
    tuned, tune_id = apply_latest_winner(config)
    before, after = describe_config(config), describe_config(tuned)
    if tune_id is not None and before != after:
        get_run_logger().info("nightly now uses %s (tune %s) — was %s", after, tune_id, before)
    return tuned, tune_id


@task(name="search", timeout_seconds=24 * 3600)
def search(
    config: DecayrecConfig,
    as_of_time: datetime,
    budget_seconds: float,
    protocol: str | None,
    max_trials: int | None = None,
) -> TuneResult:
    """Staged search of decay and model parameters on the validation split."""
    return tune(config, as_of_time, budget_seconds, protocol, progress=_log, max_trials=max_trials)


def _log(message: str) -> None:
    get_run_logger().info(message)


@task(name="decay-report", timeout_seconds=TIMEOUTS["small"])
def report_decay(
    config: DecayrecConfig, snapshot: Snapshot, run_id: str, as_of: date, run_dir: str
) -> dict[str, Any]:
    """Per-user decay parameters into the warehouse (user_decay_params), and plots of the
    decay curves (of the event types in the data, over its ages) and of the per-user
    half-lives for the run record."""
    table = f"{snapshot.path}/user_decay.parquet"
    configured_warehouse(config).record_user_decay(run_id, as_of, pq.read_table(table))
    ages = event_type_ages(config, datetime.fromisoformat(snapshot.as_of_time))
    return decay_report(config.decay, table, run_dir, ages)
