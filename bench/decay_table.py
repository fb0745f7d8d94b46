"""MovieLens-small, user-time protocol: each decay variant tuned on the validation split,
then measured once on the test split (the closing-note table of the decay issue).

    python bench/decay_table.py [--movielens ../shared/data/movielens-small]

Rows: no decay; each kernel with its parameters and lambda tuned; per-event-type decay
(ratings and tags, each type's weight and memory tuned); per-user dynamic decay on the
best kernel. Ratings only except the per-event-type row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from decayrec.config import (
    DecayConfig,
    DecayrecConfig,
    EvaluationConfig,
    ModelConfig,
    movielens_sources,
)
from decayrec.evaluate import backtest
from decayrec.ingest import load_batches, stage_sources
from decayrec.tune import KERNEL_GRID, L2_GRID, USER_DECAY_GRID, _kernel_reset

AS_OF = date(2018, 10, 1)


def lake(root: Path, movielens: str, with_tags: bool) -> DecayrecConfig:
    sources = [s for s in movielens_sources(movielens) if with_tags or s.event_type == "rating"]
    config = DecayrecConfig(
        data_dir=root, sources=sources, evaluation=EvaluationConfig(protocols=["user_time"])
    )
    load_batches(config, stage_sources(config, "bench"), "bench")
    return config


def score(config: DecayrecConfig, decay: dict[str, Any], l2: float, split: str) -> dict:
    trial = config.model_copy(
        update={"decay": DecayConfig.model_validate(decay), "model": ModelConfig(l2=l2)}
    )
    return backtest(trial, config.as_of_time(AS_OF), "user_time", split=split)


def tune(config: DecayrecConfig, points: list[dict[str, Any]], l2s=L2_GRID) -> tuple:
    """Best point at lambda 100, then the best lambda for it, on validation."""
    best = max(points, key=lambda p: score(config, p, 100.0, "validation")["model"]["ndcg@10"])
    best_l2 = max(l2s, key=lambda l2: score(config, best, l2, "validation")["model"]["ndcg@10"])
    return best, best_l2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--movielens", default="../shared/data/movielens-small")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="decayrec-decay-"))
    ratings = lake(root / "ratings", args.movielens, with_tags=False)
    both = lake(root / "both", args.movielens, with_tags=True)
    base = DecayConfig().model_dump()
    rows = []

    def add(label: str, config: DecayrecConfig, decay: dict, l2: float) -> None:
        started = time.perf_counter()
        result = score(config, decay, l2, "test")
        m = result["model"]
        rows.append((label, decay, l2, m, result["n_eval_users"], time.perf_counter() - started))
        print(f"{label}: NDCG@10 {m['ndcg@10']:.4f} Recall@10 {m['recall@10']:.4f}", flush=True)

    by_kernel: dict[str, list[dict]] = {}
    for point in KERNEL_GRID:
        by_kernel.setdefault(point["kernel"], []).append({**base, **_kernel_reset(point)})
    best_kernel: tuple[float, dict, float] | None = None
    for kernel, points in by_kernel.items():
        decay, l2 = tune(ratings, points)
        add("no decay" if kernel == "none" else kernel, ratings, decay, l2)
        val = score(ratings, decay, l2, "validation")["model"]["ndcg@10"]
        if kernel != "none" and (best_kernel is None or val > best_kernel[0]):
            best_kernel = (val, decay, l2)
    assert best_kernel is not None
    _, kernel_decay, kernel_l2 = best_kernel
    user_points = [{**kernel_decay, **p} for p in USER_DECAY_GRID]
    decay, _ = tune(ratings, user_points, l2s=(kernel_l2,))
    add("per-user dynamic decay (best kernel + drift)", ratings, decay, kernel_l2)

    type_points = [kernel_decay]
    for key in ("type_weights", "type_memory"):
        for factor in (0.25, 4.0):
            changed = dict(kernel_decay[key])
            changed["tag"] = changed.get("tag", 1.0) * factor
            type_points.append({**kernel_decay, key: changed})
    decay, l2 = tune(both, type_points, l2s=(kernel_l2,))
    add("per-event-type decay (ratings + tags)", both, decay, l2)

    print("\n| variant | chosen on validation | NDCG@10 | Recall@10 | users |")
    print("|---|---|---|---|---|")
    for label, decay, l2, m, n_users, _ in rows:
        keys = {
            "exponential": ["half_life_days"],
            "power_law": ["power_tau_days", "power_exponent"],
            "sigmoid": ["sigmoid_midpoint_days", "sigmoid_width_days"],
            "window": ["window_days"],
            "none": [],
        }[decay["kernel"]]
        chosen = [f"{k}={decay[k]:g}" for k in keys] + [f"lambda={l2:g}"]
        if decay.get("user_decay") == "drift":
            chosen.append(f"drift^{decay['drift_strength']:g}")
        if "ratings + tags" in label:
            chosen.append(
                f"tag weight {decay['type_weights'].get('tag')}, "
                f"tag memory {decay['type_memory'].get('tag', 1.0)}"
            )
        print(
            f"| {label} | {', '.join(chosen)} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} "
            f"| {n_users} |"
        )


if __name__ == "__main__":
    main()
