"""PNG plots of a run's decay: the curves per event type and the per-user half-lives."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from decayrec.config import DecayConfig  # noqa: E402
from decayrec.lake.decay import effective_half_life, kernel_weight  # noqa: E402


def decay_curves(decay: DecayConfig, path: str | Path) -> Path:
    """Weight of one event vs its age, per event type (type weight x K(age / memory))."""
    horizon = min(max(3 * effective_half_life(decay), 30.0), 3650.0)
    if not np.isfinite(horizon):
        horizon = 3650.0
    ages = np.linspace(0, horizon, 400)
    fig, ax = plt.subplots(figsize=(7, 4))
    for event_type, weight in sorted(decay.type_weights.items()):
        if weight > 0:
            memory = decay.type_memory.get(event_type, 1.0)
            ax.plot(ages, weight * kernel_weight(ages, decay, memory), label=event_type)
    ax.set_xlabel("age of the event (days)")
    ax.set_ylabel("weight of one event")
    ax.set_title(f"decay kernel: {decay.kernel}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def user_half_lives(half_lives: np.ndarray, path: str | Path) -> Path:
    """Histogram of the per-user effective half-lives (days)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    finite = half_lives[np.isfinite(half_lives)]
    if len(finite):
        ax.hist(finite, bins=40, color="tab:blue", alpha=0.8)
    ax.set_xlabel("effective half-life (days)")
    ax.set_ylabel("users")
    ax.set_title(f"per-user half-life ({len(finite)} users)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def decay_report(
    decay: DecayConfig, user_decay_path: str | Path, out_dir: str | Path
) -> dict[str, object]:
    """Write the run's decay plots; return their paths and a summary of user half-lives."""
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    half_lives = pq.read_table(user_decay_path, columns=["half_life_days"])
    values = half_lives["half_life_days"].to_numpy()
    finite = values[np.isfinite(values)]
    summary: dict[str, object] = {
        "kernel": decay.kernel,
        "user_decay": decay.user_decay,
        "plots": [
            str(decay_curves(decay, out / "decay_curves.png")),
            str(user_half_lives(values, out / "user_half_lives.png")),
        ],
        "user_decay_table": str(user_decay_path),
    }
    if len(finite):
        p10, p50, p90 = np.percentile(finite, [10, 50, 90])
        summary["user_half_life_days"] = {"p10": p10, "median": p50, "p90": p90}
    return summary
