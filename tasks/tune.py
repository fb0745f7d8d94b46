from datetime import datetime
from typing import Any

from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.features import Snapshot
from decayrec.plots import decay_report
from decayrec.tune import TuneResult, apply_latest_winner, tune


@task(name="configure")
def configure(config: DecayrecConfig) -> tuple[DecayrecConfig, str | None]:
    """The run's config: the newest tuning winner's decay and lambda, if any and wanted."""
    return apply_latest_winner(config)


@task(name="search")
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


@task(name="decay-report")
def report_decay(config: DecayrecConfig, snapshot: Snapshot, run_dir: str) -> dict[str, Any]:
    """Plots of the decay curves and of the per-user half-lives, for the run record."""
    return decay_report(config.decay, f"{snapshot.path}/user_decay.parquet", run_dir)
