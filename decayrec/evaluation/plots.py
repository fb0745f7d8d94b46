"""PNG plots of a run: the decay curves of the event types in the data, the per-user
half-lives, and the backtest metrics over the runs. Every plot is WIDTH_PX wide."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from decayrec.config import DecayConfig  # noqa: E402
from decayrec.lake.decay import effective_half_life, kernel_weight  # noqa: E402
from decayrec.lake.features import EventTypeAges  # noqa: E402

DPI = 100
WIDTH_PX, HEIGHT_PX = 1400, 560
# log-scale age ticks (days) and their labels
AGE_TICKS = {
    1 / 24: "1 hour",
    1.0: "1 day",
    7.0: "1 week",
    30.0: "1 month",
    365.0: "1 year",
    3650.0: "10 years",
    36500.0: "100 years",
}
MIN_AGE_DAYS = 1 / 24
REFERENCES = {
    "user_last": "ages count from each user's latest event",
    "as_of": "ages count from the as-of instant",
}


def _figure(ncols: int = 1) -> tuple[Any, Any]:
    return plt.subplots(1, ncols, figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), squeeze=False)


def _save(fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)  # no bbox cropping: the size stays WIDTH_PX x HEIGHT_PX
    plt.close(fig)
    return Path(path)


def _days(value: float) -> str:
    return f"{value:.3g} days"


def kernel_description(decay: DecayConfig) -> str:
    """The kernel and its parameters in words: 'exponential, half-life 365 days'."""
    if decay.kernel == "exponential":
        return f"exponential, half-life {_days(decay.half_life_days)}"
    if decay.kernel == "power_law":
        return (
            f"power law, τ {_days(decay.power_tau_days)}, exponent {decay.power_exponent:g} "
            f"(half-life {_days(effective_half_life(decay))})"
        )
    if decay.kernel == "sigmoid":
        return (
            f"sigmoid, midpoint {_days(decay.sigmoid_midpoint_days)}, width "
            f"{_days(decay.sigmoid_width_days)}"
        )
    if decay.kernel == "window":
        return f"window of {_days(decay.window_days)}"
    return "none (every event weighs the same at any age)"


def decay_title(decay: DecayConfig) -> str:
    """The decay plot's title: kernel, parameters, reference, saturation."""
    parts = [f"decay kernel: {kernel_description(decay)}", REFERENCES[decay.reference]]
    if decay.saturation != "none":
        cap = f" {decay.saturation_cap:g}" if decay.saturation == "cap" else ""
        parts.append(f"repeats saturate: {decay.saturation}{cap}")
    return "; ".join(parts)


def plotted_types(decay: DecayConfig, ages: Sequence[EventTypeAges]) -> list[EventTypeAges]:
    """The event types a decay plot draws: those in the data that weigh more than 0."""
    return [a for a in ages if decay.type_weights.get(a.event_type, 0.0) > 0]


def age_span(ages: Sequence[EventTypeAges]) -> tuple[float, float]:
    """The plot's age axis: from an hour to the oldest event's age (at least a day)."""
    oldest = max((a.oldest_age_days for a in ages), default=1.0)
    return MIN_AGE_DAYS, max(oldest, 1.0)


def _age_axis(ax: Any, lo: float, hi: float) -> None:
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = {t: label for t, label in AGE_TICKS.items() if lo <= t <= hi}
    ticks[hi] = f"oldest event\n{hi / 365.25:.1f} years" if hi >= 365 else _days(hi)
    ax.set_xticks(list(ticks), list(ticks.values()))
    ax.minorticks_off()


def decay_curves(
    decay: DecayConfig, path: str | Path, ages: Sequence[EventTypeAges]
) -> tuple[Path, list[str]]:
    """Weight of one event vs its age (log scale, over the data's whole span), for each
    event type in the data (`ages`, from decayrec.lake.features.event_type_ages) that
    weighs more than 0: type weight x K(age / type memory). Returns the file and the
    types drawn."""
    drawn = plotted_types(decay, ages)
    lo, hi = age_span(ages)
    grid = np.geomspace(lo, hi, 600)
    fig, axes = _figure()
    ax = axes[0][0]
    for a in drawn:
        weight = decay.type_weights[a.event_type]
        memory = decay.type_memory.get(a.event_type, 1.0)
        label = f"{a.event_type}: weight {weight:g}"
        if memory != 1.0:
            label += f", memory x{memory:g}"
        label += f" ({a.n_events:,} events)"
        # the curve over the ages this type's events have; dotted beyond them
        inside = (grid >= max(a.newest_age_days, lo)) & (grid <= a.oldest_age_days)
        weights = weight * kernel_weight(grid, decay, memory)
        [line] = ax.plot(grid, np.where(inside, weights, np.nan), linewidth=2, label=label)
        ax.plot(grid, weights, linestyle=":", color=line.get_color(), linewidth=1)
    half_life = effective_half_life(decay)
    if np.isfinite(half_life) and lo < half_life < hi:
        ax.axvline(half_life, color="grey", linestyle="--", linewidth=1)
        ax.annotate(
            f"half-life {_days(half_life)}",
            (half_life, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, -14),
            textcoords="offset points",
            color="grey",
        )
    if not drawn:
        ax.text(0.5, 0.5, "no weighted event type in the data", ha="center", transform=ax.transAxes)
    _age_axis(ax, lo, hi)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("age of the event (log scale; solid: the ages this type's events have)")
    ax.set_ylabel("weight of one event")
    ax.set_title(decay_title(decay))
    if drawn:
        ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path), [a.event_type for a in drawn]


def user_half_lives(half_lives: np.ndarray, path: str | Path) -> Path:
    """Histogram of the per-user effective half-lives (days), on a log scale when they
    spread over more than a factor of 10."""
    fig, axes = _figure()
    ax = axes[0][0]
    finite = half_lives[np.isfinite(half_lives) & (half_lives > 0)]
    if len(finite):
        lo, hi = float(finite.min()), float(finite.max())
        if hi > 10 * lo:
            ax.hist(finite, bins=np.geomspace(lo, hi, 41), color="tab:blue", alpha=0.8)
            ax.set_xscale("log")
        else:
            ax.hist(finite, bins=40, color="tab:blue", alpha=0.8)
        median = float(np.median(finite))
        ax.axvline(median, color="black", linestyle="--", linewidth=1)
        ax.annotate(f"median {_days(median)}", (median, 0.95), xycoords=("data", "axes fraction"))
    ax.set_xlabel("effective half-life (days)")
    ax.set_ylabel("users")
    ax.set_title(f"per-user half-life ({len(finite):,} users)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def half_life_note(decay: DecayConfig) -> str:
    """What the per-user half-life plot would show when per-user decay is off."""
    half_life = effective_half_life(decay)
    every = "no decay" if not np.isfinite(half_life) else f"half-life {_days(half_life)}"
    note = f"per-user decay off (decay.user_decay = off): every user has the same {every}"
    if decay.type_memory and np.isfinite(half_life):
        scaled = ", ".join(
            f"{t} {_days(half_life * m)}" for t, m in sorted(decay.type_memory.items())
        )
        note += f" (times the type memory: {scaled})"
    return note


def decay_report(
    decay: DecayConfig,
    user_decay_path: str | Path,
    out_dir: str | Path,
    ages: Sequence[EventTypeAges],
) -> dict[str, object]:
    """Write the run's decay plots; return their paths, what they show and a summary of
    the user half-lives. `ages`: the event types of the data and their ages."""
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    half_lives = pq.read_table(user_decay_path, columns=["half_life_days"])
    values = half_lives["half_life_days"].to_numpy()
    finite = values[np.isfinite(values)]
    curves, drawn = decay_curves(decay, out / "decay_curves.png", ages)
    summary: dict[str, object] = {
        "kernel": decay.kernel,
        "title": decay_title(decay),
        "user_decay": decay.user_decay,
        "event_types": drawn,
        "oldest_age_days": age_span(ages)[1],
        "plots": [str(curves)],
        "user_decay_table": str(user_decay_path),
    }
    if decay.user_decay == "off":
        summary["user_half_life_note"] = half_life_note(decay)
    else:
        summary["plots"].append(str(user_half_lives(values, out / "user_half_lives.png")))
    if len(finite):
        p10, p50, p90 = np.percentile(finite, [10, 50, 90])
        summary["user_half_life_days"] = {"p10": p10, "median": p50, "p90": p90}
    return summary


def metric_history(
    history: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | Path,
    metric: str = "ndcg",
    k: int = 10,
    current_run: str | None = None,
) -> Path:
    """A backtest metric (ndcg or recall at k) over the runs, one panel per protocol (in
    the order given: the gate's first), the model's and decayed popularity's.
    `history[protocol]`: rows of sql/queries/metric_history.sql (run_id, as_of_date,
    model_<metric>, popularity_<metric>), oldest run first."""
    protocols = [p for p, rows in history.items() if rows]
    fig, axes = _figure(max(len(protocols), 1))
    for ax, protocol in zip(axes[0], protocols, strict=False):
        rows = history[protocol]
        x = np.arange(len(rows))
        model, popularity = (
            np.array(
                [np.nan if r[f"{side}_{metric}"] is None else r[f"{side}_{metric}"] for r in rows]
            )
            for side in ("model", "popularity")
        )
        ax.plot(x, model, marker="o", linewidth=2, label="model")
        ax.plot(x, popularity, marker="s", linestyle="--", label="decayed popularity")
        for i, r in enumerate(rows):
            if r["run_id"] == current_run:
                ax.axvline(i, color="grey", linewidth=1, linestyle=":")
                ax.annotate("this run", (i, 0.02), xycoords=("data", "axes fraction"))
        step = max(1, len(rows) // 10)
        ax.set_xticks(x[::step], [str(r["as_of_date"]) for r in rows][::step], rotation=30)
        ax.set_xlabel("run (as-of date), oldest first")
        ax.set_ylabel(f"{metric}@{k}")
        ax.set_title(f"{protocol}: {metric}@{k} of the last {len(rows)} runs")
        ax.legend()
        ax.grid(alpha=0.3)
    if not protocols:
        axes[0][0].text(0.5, 0.5, "no run with metrics yet", ha="center")
    return _save(fig, path)
