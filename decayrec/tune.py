"""Tuning the decay and the model on a validation split, never on the test window.

Every trial is a backtest with split='validation' (decayrec.evaluate): the protocol's
test window is removed first and the same protocol is applied to what is left. The
search is a staged coordinate search, most influential first, and stops when the time
budget is spent:

1. kernel family and its parameters (a small grid per family), at the configured lambda;
2. lambda of the model, for the best kernel;
3. saturation of repeated interactions, and per-user dynamic decay (drift strength);
4. per-event-type weights and memories (each type's x0.5 / x2), when the data has
   more than one type.

Every trial and the winner are written to the lake (`tuning_trials`, `tuning_winners`);
the nightly flow applies the newest winner (see :func:`apply_latest_winner`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from decayrec.config import DecayConfig, DecayrecConfig, ModelConfig
from decayrec.evaluate import backtest
from decayrec.sqlfiles import connect, run_script, sql

METRIC = "ndcg@10"

KERNEL_GRID: list[dict[str, Any]] = [
    {"kernel": "none"},
    *({"kernel": "exponential", "half_life_days": h} for h in (30, 90, 365, 1095)),
    *(
        {"kernel": "power_law", "power_tau_days": t, "power_exponent": p}
        for t in (1, 30)
        for p in (0.5, 1.0)
    ),
    *(
        {"kernel": "sigmoid", "sigmoid_midpoint_days": m, "sigmoid_width_days": m / 4}
        for m in (90, 365)
    ),
    *({"kernel": "window", "window_days": w} for w in (90, 365)),
]
L2_GRID = (25.0, 50.0, 100.0, 200.0, 400.0)
SATURATION_GRID: list[dict[str, Any]] = [{"saturation": "log1p"}, {"saturation": "cap"}]
USER_DECAY_GRID: list[dict[str, Any]] = [
    {"user_decay": "drift", "drift_strength": s} for s in (0.5, 1.0, 2.0)
]


@dataclass
class Trial:
    number: int
    stage: str
    decay: dict[str, Any]
    l2: float
    score: float | None
    seconds: float


@dataclass
class TuneResult:
    tune_id: str
    protocol: str
    winner: Trial
    baseline: Trial
    trials: list[Trial] = field(default_factory=list)
    budget_exhausted: bool = False


def tune(
    config: DecayrecConfig,
    as_of: datetime,
    budget_seconds: float = 600.0,
    protocol: str | None = None,
    progress: Callable[[str], None] = print,
    max_trials: int | None = None,
) -> TuneResult:
    """Search decay and model parameters on the validation split; record and return.

    The search stops before a trial once `budget_seconds` are spent or `max_trials`
    trials have run."""
    protocol = protocol or config.evaluation.protocols[0]
    tune_id = str(uuid.uuid4())
    started = time.perf_counter()
    trials: list[Trial] = []
    base_decay = config.decay.model_dump()
    best = {"decay": base_decay, "l2": config.model.l2}
    best_score: float | None = None
    exhausted = False

    def run(stage: str, decay: dict[str, Any], l2: float) -> Trial:
        trial_config = config.model_copy(
            update={
                "decay": DecayConfig.model_validate(decay),
                "model": config.model.model_copy(update={"l2": l2}),
            }
        )
        t0 = time.perf_counter()
        result = backtest(trial_config, as_of, protocol, split="validation")
        score = result.get("model", {}).get(METRIC)
        trial = Trial(len(trials) + 1, stage, decay, l2, score, round(time.perf_counter() - t0, 3))
        trials.append(trial)
        return trial

    def candidates() -> Iterator[tuple[str, dict[str, Any], float]]:
        yield "baseline", base_decay, config.model.l2
        for params in KERNEL_GRID:
            yield "kernel", {**best["decay"], **_kernel_reset(params)}, best["l2"]
        for l2 in L2_GRID:
            yield "l2", best["decay"], l2
        for params in [*SATURATION_GRID, *USER_DECAY_GRID]:
            yield "dynamics", {**best["decay"], **params}, best["l2"]
        for event_type in _event_types(config):
            for key in ("type_weights", "type_memory"):
                for factor in (0.5, 2.0):
                    current = dict(best["decay"][key])
                    current[event_type] = current.get(event_type, 1.0) * factor
                    yield "types", {**best["decay"], key: current}, best["l2"]

    seen: set[str] = set()
    for stage, raw_decay, l2 in candidates():
        decay = DecayConfig.model_validate(raw_decay).model_dump()  # one spelling per point
        key = json.dumps([decay, l2], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        if max_trials is not None and len(trials) >= max_trials:
            break
        if trials and time.perf_counter() - started > budget_seconds:
            exhausted = True
            progress(
                f"tune: time budget of {budget_seconds:.0f} s spent after {len(trials)} trials"
            )
            break
        trial = run(stage, decay, l2)
        improved = trial.score is not None and (best_score is None or trial.score > best_score)
        if improved:
            best, best_score = {"decay": decay, "l2": l2}, trial.score
        progress(
            f"tune trial {trial.number} [{stage}] {_describe(decay, l2)}: "
            f"validation {METRIC} {trial.score if trial.score is None else round(trial.score, 5)}"
            f"{'  (best so far)' if improved else ''}  {trial.seconds:.1f} s"
        )
    winner = next(t for t in trials if t.decay == best["decay"] and t.l2 == best["l2"])
    result = TuneResult(tune_id, protocol, winner, trials[0], trials, exhausted)
    record(config, as_of, result)
    return result


def _kernel_reset(params: dict[str, Any]) -> dict[str, Any]:
    """A kernel grid point on top of the defaults of the other kernel parameters."""
    defaults = DecayConfig().model_dump()
    keys = (
        "kernel",
        "half_life_days",
        "power_tau_days",
        "power_exponent",
        "sigmoid_midpoint_days",
        "sigmoid_width_days",
        "window_days",
    )
    return {**{k: defaults[k] for k in keys}, **params}


def _event_types(config: DecayrecConfig) -> list[str]:
    con = connect(config.lake_path)
    try:
        run_script(con, "lake/schema")
        present = {r[0] for r in con.execute("select distinct event_type from events").fetchall()}
    finally:
        con.close()
    weighted = [t for t, w in config.decay.type_weights.items() if w > 0 and t in present]
    return sorted(weighted) if len(weighted) > 1 else []


def _describe(decay: dict[str, Any], l2: float) -> str:
    kernel = decay["kernel"]
    params = {
        "exponential": ["half_life_days"],
        "power_law": ["power_tau_days", "power_exponent"],
        "sigmoid": ["sigmoid_midpoint_days", "sigmoid_width_days"],
        "window": ["window_days"],
        "none": [],
    }[kernel]
    parts = [kernel, *(f"{p}={decay[p]:g}" for p in params), f"l2={l2:g}"]
    if decay.get("saturation", "none") != "none":
        parts.append(f"saturation={decay['saturation']}")
    if decay.get("user_decay", "off") != "off":
        parts.append(f"user_decay=drift^{decay['drift_strength']:g}")
    defaults = DecayConfig().model_dump()
    for key in ("type_weights", "type_memory"):
        changed = {t: v for t, v in decay.get(key, {}).items() if defaults[key].get(t, 1.0) != v}
        if changed:
            parts.append(f"{key}={changed}")
    return " ".join(parts)


def record(config: DecayrecConfig, as_of: datetime, result: TuneResult) -> None:
    """Write every trial and the winner to the lake."""
    now = datetime.now(UTC)
    con = connect(config.lake_path)
    try:
        run_script(con, "lake/tuning")
        con.execute("begin transaction")
        con.executemany(
            sql("lake/insert_tuning_trial"),
            [
                {
                    "tune_id": result.tune_id,
                    "trial": t.number,
                    "stage": t.stage,
                    "decay": json.dumps(t.decay, sort_keys=True),
                    "l2": t.l2,
                    "metric": METRIC,
                    "score": t.score,
                    "seconds": t.seconds,
                    "recorded_at": now,
                }
                for t in result.trials
            ],
        )
        con.execute(
            sql("lake/insert_tuning_winner"),
            {
                "tune_id": result.tune_id,
                "as_of": as_of,
                "protocol": result.protocol,
                "decay": json.dumps(result.winner.decay, sort_keys=True),
                "l2": result.winner.l2,
                "metric": METRIC,
                "score": result.winner.score,
                "baseline_score": result.baseline.score,
                "n_trials": len(result.trials),
                "recorded_at": now,
            },
        )
        con.execute("commit")
    finally:
        con.close()


def latest_winner(config: DecayrecConfig) -> dict[str, Any] | None:
    con = connect(config.lake_path)
    try:
        run_script(con, "lake/tuning")
        rows = con.execute(sql("lake/latest_tuning_winner")).fetchall()
    finally:
        con.close()
    if not rows:
        return None
    tune_id, decay, l2, score = rows[0]
    return {"tune_id": tune_id, "decay": json.loads(decay), "l2": l2, "score": score}


def apply_latest_winner(config: DecayrecConfig) -> tuple[DecayrecConfig, str | None]:
    """The config with the newest tuning winner's decay and lambda, when tuning is on."""
    if not config.use_tuned:
        return config, None
    winner = latest_winner(config)
    if winner is None:
        return config, None
    tuned = config.model_copy(
        update={
            "decay": DecayConfig.model_validate(winner["decay"]),
            "model": ModelConfig.model_validate({**config.model.model_dump(), "l2": winner["l2"]}),
        }
    )
    return tuned, winner["tune_id"]
