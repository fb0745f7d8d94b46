"""Tuning the model and the decay on a validation split, never on the test window.

Every trial is a backtest with split='validation' (decayrec.evaluation.backtest): the protocol's
test window is removed first and the same protocol is applied to what is left, and the
backtest is the nightly run itself on that data, so a trial's score is what the lists of
that night would have scored. The search starts from the settings in force (the config
with the newest applied winner) and is a staged coordinate search, most influential
first, stopping when the time budget is spent:

1. recency: how strongly a user's latest items weigh at scoring (`decay.recency_events`);
2. model: EASE's lambda, item-item (similarity, neighbours), iALS (factors, reg);
3. pairs: the time-gap decay of item-item relations (`decay.pair_half_life_days`);
4. kernel: the decay kernel, its parameters and its reference (user's latest event or
   the as-of instant);
5. dynamics: saturation of repeated interactions, per-user drift memory;
6. types: per-event-type weights and memories (x0.5 / x2), when the data has more than
   one type;

then, while time is left, recency, the chosen model's own settings and pairs again
around the new best.

The winner is applied only if it beats the settings in force on validation. Every trial
and the winner go to the lake (`tuning_trials`, `tuning_winners`); the nightly flow
applies the newest applied winner (:func:`apply_latest_winner`) and logs what changed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from decayrec.config import DecayConfig, DecayrecConfig, ModelConfig, model_section
from decayrec.evaluation.backtest import backtest
from decayrec.lake.session import LakeSession
from decayrec.progress import duration
from decayrec.sqlfiles import connect, run_script, sql

METRIC = "ndcg@10"

RECENCY_GRID = [{"recency_events": r} for r in (0.0, 1.0, 2.0, 3.0, 5.0, 10.0)]
MODEL_GRID: list[dict[str, Any]] = [
    *({"name": "ease", "l2": l2} for l2 in (50.0, 100.0, 200.0, 400.0, 800.0)),
    *(
        {"name": "itemknn", "similarity": s, "neighbours": n}
        for s, n in (("jaccard", 100), ("jaccard", 300), ("cosine", 100))
    ),
    *({"name": "ials", "factors": f, "reg": r} for f, r in ((64, 1.0), (128, 10.0))),
]
PAIR_GRID = [{"pair_half_life_days": h} for h in (0.0, 1.0, 7.0, 30.0, 365.0)]
KERNEL_GRID: list[dict[str, Any]] = [
    {"kernel": "none"},
    *({"kernel": "exponential", "half_life_days": h} for h in (30, 90, 365, 1095)),
    {"kernel": "exponential", "half_life_days": 365, "reference": "as_of"},
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
DYNAMICS_GRID: list[dict[str, Any]] = [
    {"saturation": "log1p"},
    {"saturation": "cap"},
    *({"user_decay": "drift", "drift_strength": s} for s in (0.5, 1.0, 2.0)),
]
KERNEL_KEYS = (
    "kernel",
    "half_life_days",
    "power_tau_days",
    "power_exponent",
    "sigmoid_midpoint_days",
    "sigmoid_width_days",
    "window_days",
    "reference",
)


@dataclass
class Trial:
    number: int
    stage: str
    model: dict[str, Any]  # the model's name and its tuned settings
    decay: dict[str, Any]  # the whole DecayConfig
    score: float | None
    seconds: float

    @property
    def l2(self) -> float | None:
        """EASE's lambda (None for the other models)."""
        return float(self.model["l2"]) if "l2" in self.model else None

    def describe(self) -> str:
        return describe(self.model, self.decay)


@dataclass
class TuneResult:
    tune_id: str
    protocol: str
    winner: Trial
    baseline: Trial
    trials: list[Trial] = field(default_factory=list)
    budget_exhausted: bool = False

    @property
    def applied(self) -> bool:
        """The winner beat the settings in force on validation (the nightly takes it)."""
        return self.winner is not self.baseline


def tuned_model_fields(model: ModelConfig) -> dict[str, Any]:
    """The model's name and the settings tuning chooses (its section's `tuned`; the
    rest: batch sizes, devices, the gate's own settings, stay as configured)."""
    dumped = model.model_dump(mode="json")
    return {k: dumped[k] for k in ("name", *model.tuned)}


def tuned_model(config: DecayrecConfig, model: dict[str, Any]) -> ModelConfig:
    """The configured model section with these tuned settings; settings of another
    model (a grid point that switches models) are left out."""
    return model_section({**config.model.model_dump(), **model})


def with_settings(
    config: DecayrecConfig, model: dict[str, Any], decay: dict[str, Any]
) -> DecayrecConfig:
    """`config` with these tuned model fields and this decay."""
    return config.model_copy(
        update={"decay": DecayConfig.model_validate(decay), "model": tuned_model(config, model)}
    )


def tune(
    config: DecayrecConfig,
    as_of: datetime,
    budget_seconds: float = 600.0,
    protocol: str | None = None,
    progress: Callable[[str], None] = print,
    max_trials: int | None = None,
) -> TuneResult:
    """Search model and decay settings on the validation split; record and return.

    The search starts from the settings in force and stops before a trial that would
    end past `budget_seconds` (judged by the last trial's time) or once `max_trials`
    trials have run."""
    config, _ = apply_latest_winner(config)
    protocol = protocol or config.evaluation.protocols[0]
    tune_id = str(uuid.uuid4())
    started = time.perf_counter()
    trials: list[Trial] = []
    best: dict[str, Any] = {
        "model": tuned_model_fields(config.model),
        "decay": config.decay.model_dump(mode="json"),
    }
    best_trial: Trial | None = None
    exhausted = False

    def run(stage: str, model: dict[str, Any], decay: dict[str, Any]) -> Trial:
        t0 = time.perf_counter()
        trial_config = with_settings(config, model, decay)
        result = backtest(trial_config, as_of, protocol, "validation", lake)
        score = result.get("model", {}).get(METRIC)
        trial = Trial(
            len(trials) + 1, stage, model, decay, score, round(time.perf_counter() - t0, 3)
        )
        trials.append(trial)
        return trial

    def candidates() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        yield "baseline", best["model"], best["decay"]
        for round_ in (1, 2):  # round 2 revisits recency, the model and pairs (if time)
            for params in RECENCY_GRID:
                yield "recency", best["model"], {**best["decay"], **params}
            for params in MODEL_GRID:
                if round_ == 1 or params["name"] == best["model"]["name"]:
                    yield "model", {**best["model"], **params}, best["decay"]
            for params in PAIR_GRID:
                yield "pairs", best["model"], {**best["decay"], **params}
            if round_ == 2:
                return
            for params in KERNEL_GRID:
                yield "kernel", best["model"], {**best["decay"], **_kernel_reset(params)}
            for params in DYNAMICS_GRID:
                if "user_decay" in params and best["decay"]["kernel"] == "none":
                    continue  # a user's memory stretches ages: nothing to stretch
                yield "dynamics", best["model"], {**best["decay"], **params}
            for event_type in _event_types(lake, config):
                for key in ("type_weights", "type_memory"):
                    for factor in (0.5, 2.0):
                        current = dict(best["decay"][key])
                        current[event_type] = current.get(event_type, 1.0) * factor
                        yield "types", best["model"], {**best["decay"], key: current}

    # one lake session for every trial (run() and candidates() use it): a build each
    with LakeSession.connect(config.lake_path) as lake:
        seen: set[str] = set()
        for stage, raw_model, raw_decay in candidates():
            # one spelling per point
            model = tuned_model_fields(tuned_model(config, raw_model))
            decay = DecayConfig.model_validate(raw_decay).model_dump(mode="json")
            key = json.dumps([model, decay], sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            if max_trials is not None and len(trials) >= max_trials:
                break
            elapsed = time.perf_counter() - started
            if trials and elapsed + trials[-1].seconds > budget_seconds:
                exhausted = True
                progress(
                    f"tune: time budget of {budget_seconds:.0f} s reached after {len(trials)} "
                    f"trials ({elapsed:.0f} s)"
                )
                break
            trial = run(stage, model, decay)
            improved = trial.score is not None and (
                best_trial is None or best_trial.score is None or trial.score > best_trial.score
            )
            if improved:
                best, best_trial = {"model": model, "decay": decay}, trial
            progress(
                trial_line(
                    trial, best_trial, time.perf_counter() - started, budget_seconds, max_trials
                )
            )
    baseline = trials[0]
    winner = best_trial if best_trial is not None else baseline
    result = TuneResult(tune_id, protocol, winner, baseline, trials, exhausted)
    record(config, as_of, result)
    if result.applied:
        progress(f"tune: the nightly now uses {winner.describe()} — was {baseline.describe()}")
    else:
        progress(f"tune: nothing beat the settings in force ({baseline.describe()})")
    return result


def trial_line(
    trial: Trial,
    best: Trial | None,
    elapsed: float,
    budget_seconds: float,
    max_trials: int | None = None,
) -> str:
    """A trial's progress line: its number (of `max_trials`, else within the budget), its
    settings and score, the best so far, the time spent and an ETA (the search ends at
    the time budget, or sooner after `max_trials`)."""
    of = f" of {max_trials}" if max_trials else f" (budget {duration(budget_seconds)})"
    score = "none" if trial.score is None else f"{trial.score:.5f}"
    if best is trial:
        best_text = "best so far"
    elif best is not None and best.score is not None:
        best_text = f"best {best.score:.5f} (trial {best.number})"
    else:
        best_text = "no best yet"
    left = max(budget_seconds - elapsed, 0.0)
    if max_trials:
        left = min(left, elapsed / trial.number * max(max_trials - trial.number, 0))
    return (
        f"tune trial {trial.number}{of} [{trial.stage}] {trial.describe()}: validation "
        f"{METRIC} {score}, {best_text}; {trial.seconds:.1f} s, {duration(elapsed)} in all, "
        f"ETA at most {duration(left)}"
    )


def _kernel_reset(params: dict[str, Any]) -> dict[str, Any]:
    """A kernel grid point on top of the defaults of the other kernel parameters."""
    defaults = DecayConfig().model_dump(mode="json")
    return {**{k: defaults[k] for k in KERNEL_KEYS}, **params}


def _event_types(lake: LakeSession, config: DecayrecConfig) -> list[str]:
    run_script(lake.con, "lake/schema")
    present = {r[0] for r in lake.con.execute("select distinct event_type from events").fetchall()}
    weighted = [t for t, w in config.decay.type_weights.items() if w > 0 and t in present]
    return sorted(weighted) if len(weighted) > 1 else []


def describe(model: dict[str, Any], decay: dict[str, Any]) -> str:
    """One line for operators: the model and its main settings, then the decay."""
    name = model["name"]
    if name == "ease":
        parts = [f"ease λ {model['l2']:g}"]
    elif name == "itemknn":
        parts = [f"itemknn ({model['similarity']}, {model['neighbours']} neighbours)"]
    elif name == "ials":
        parts = [f"ials ({model['factors']} factors, reg {model['reg']:g})"]
    else:
        parts = [str(name)]
    kernel = decay["kernel"]
    shape = {
        "exponential": f"half-life {decay['half_life_days']:g} d",
        "power_law": f"power law τ {decay['power_tau_days']:g} d, p {decay['power_exponent']:g}",
        "sigmoid": f"sigmoid t0 {decay['sigmoid_midpoint_days']:g} d, "
        f"s {decay['sigmoid_width_days']:g} d",
        "window": f"window {decay['window_days']:g} d",
        "none": "no time decay",
    }[kernel]
    if kernel != "none":
        shape += (
            " from the user's last event"
            if decay["reference"] == "user_last"
            else (" from the as-of date")
        )
    parts.append(shape)
    if decay.get("recency_events", 0):
        parts.append(f"recency {decay['recency_events']:g} events")
    if decay.get("pair_half_life_days", 0):
        parts.append(f"pair half-life {decay['pair_half_life_days']:g} d")
    if decay.get("saturation", "none") != "none":
        parts.append(f"saturation {decay['saturation']}")
    if decay.get("user_decay", "off") != "off":
        parts.append(f"user drift ^{decay['drift_strength']:g}")
    defaults = DecayConfig().model_dump()
    for key in ("type_weights", "type_memory"):
        changed = {t: v for t, v in decay.get(key, {}).items() if defaults[key].get(t, 1.0) != v}
        if changed:
            parts.append(f"{key} {changed}")
    return ", ".join(parts)


def describe_config(config: DecayrecConfig) -> str:
    return describe(tuned_model_fields(config.model), config.decay.model_dump(mode="json"))


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
                    "model": json.dumps(t.model, sort_keys=True),
                    "l2": _l2_column(t),
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
                "model": json.dumps(result.winner.model, sort_keys=True),
                "l2": _l2_column(result.winner),
                "metric": METRIC,
                "score": result.winner.score,
                "baseline_score": result.baseline.score,
                "n_trials": len(result.trials),
                "applied": result.applied,
                "recorded_at": now,
            },
        )
        con.execute("commit")
    finally:
        con.close()


def _l2_column(trial: Trial) -> float:
    """The tuning tables' (not null) `l2` column: EASE's lambda, NaN for other models."""
    return float("nan") if trial.l2 is None else trial.l2


def latest_winner(config: DecayrecConfig) -> dict[str, Any] | None:
    """The newest applied winner: tune_id, decay, model (tuned fields), l2, score."""
    if not config.lake_path.exists():
        return None
    con = connect(config.lake_path)
    try:
        run_script(con, "lake/tuning")
        rows = con.execute(sql("lake/latest_tuning_winner")).fetchall()
    finally:
        con.close()
    if not rows:
        return None
    tune_id, decay, model, l2, score = rows[0]
    model = json.loads(model) if model else {"l2": l2}  # winners before models were tuned
    return {
        "tune_id": tune_id,
        "decay": json.loads(decay),
        "model": model,
        "l2": l2,
        "score": score,
    }


def apply_latest_winner(config: DecayrecConfig) -> tuple[DecayrecConfig, str | None]:
    """The config with the newest applied tuning winner's model and decay settings, when
    tuning is on."""
    if not config.use_tuned:
        return config, None
    winner = latest_winner(config)
    if winner is None:
        return config, None
    return with_settings(config, winner["model"], winner["decay"]), winner["tune_id"]
