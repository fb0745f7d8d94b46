from datetime import datetime
from typing import Any

from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.evaluation.backtest import evaluate_all
from tasks import TIMEOUTS


@task(name="evaluate", timeout_seconds=TIMEOUTS["evaluate"])
def evaluate(config: DecayrecConfig, as_of_time: datetime) -> dict[str, Any]:
    """Temporal backtests of the model and of popularity on the data before T."""
    return evaluate_all(config, as_of_time, progress=get_run_logger().info)
