"""The tune flow: search decay and model parameters on a validation split of the data
before the as-of time; the nightly flow then uses the winner."""

from typing import Any

from prefect import flow, get_run_logger

from decayrec.config import AsOfDate, DecayrecConfig, MaxTrials, TuneProtocol
from flows.guard import resolved_as_of, run_name
from tasks.ingest import ingest
from tasks.tune import search
from tasks.validate import validate


@flow(name="tune", flow_run_name=run_name("tune"), log_prints=True)
def tune_flow(
    as_of: AsOfDate = None,
    config: DecayrecConfig = DecayrecConfig(),  # noqa: B008 - the UI form shows these defaults
    budget_seconds: float = 600.0,
    protocol: TuneProtocol = None,
    max_trials: MaxTrials = None,
) -> dict[str, Any]:
    """Load new events, then tune within `budget_seconds`; returns the winner.

    Args:
        as_of: the as-of date: the search uses the events before its midnight in
            config.timezone. Empty: today in config.timezone (a scheduled run: the date
            of its slot)
        config: the settings the search starts from and the winner is measured against
        budget_seconds: the search stops after this many seconds
        protocol: the backtest protocol the trials are judged on (default: the first of
            config.evaluation.protocols)
        max_trials: the search stops after this many trials (default: the budget alone)
    """
    as_of = resolved_as_of(as_of, config)
    run_id = f"tune-{as_of.isoformat()}"
    validate(config, ingest(config, run_id), run_id)
    result = search(config, config.as_of_time(as_of), budget_seconds, protocol, max_trials)
    get_run_logger().info(
        "tune %s: %s %s (validation %s; settings in force %s) after %d trials",
        result.tune_id,
        "applied" if result.applied else "kept the settings in force:",
        result.winner.describe(),
        result.winner.score,
        result.baseline.score,
        len(result.trials),
    )
    return {
        "tune_id": result.tune_id,
        "protocol": result.protocol,
        "winner": {
            "model": result.winner.model,
            "decay": result.winner.decay,
            "l2": result.winner.l2,
            "score": result.winner.score,
            "described": result.winner.describe(),
        },
        "applied": result.applied,
        "baseline_score": result.baseline.score,
        "n_trials": len(result.trials),
        "budget_exhausted": result.budget_exhausted,
    }
