"""MovieLens-small: each way time can enter, chosen on the validation split, then measured
once on the test split, on both protocols (the decay table of the README).

    python bench/decay_table.py [--movielens ../shared/data/movielens-small]
        [--protocols user_time global_time] [--out decay_table.json]

Every figure is a backtest, i.e. the nightly run itself on the split's training events,
scored on the lists it publishes (decayrec.evaluation.backtest; tests/test_one_computation.py checks
it against ../shared/eval/score_published.py). The model is EASE at the default lambda.
Rows:

* no time: no kernel, no recency weighting;
* each kernel, ages from the user's latest event, its parameters chosen on validation;
* the exponential kernel with ages from the as-of date (the nightly before this table);
* recency: a user's items weighted by how many items they took up since, at scoring;
* recency + the best kernel; + gap-decayed item pairs; + per-user drift memory;
* per event type (ratings and tags, on the best of the above).

Ratings only except the per-event-type row.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from decayrec.config import DecayConfig, DecayrecConfig, EvaluationConfig, movielens_sources
from decayrec.evaluation.backtest import backtest
from decayrec.evaluation.tune import (
    DYNAMICS_GRID,
    KERNEL_GRID,
    PAIR_GRID,
    RECENCY_GRID,
    _kernel_reset,
)
from decayrec.lake.ingest import load_batches, stage_sources

AS_OF = date(2018, 10, 1)
STILL = {"kernel": "none", "recency_events": 0.0, "pair_half_life_days": 0.0}


def lake(root: Path, movielens: str, with_tags: bool) -> DecayrecConfig:
    sources = [s for s in movielens_sources(movielens) if with_tags or s.event_type == "rating"]
    config = DecayrecConfig(
        data_dir=root, sources=sources, evaluation=EvaluationConfig(protocols=["user_time"])
    )
    load_batches(config, stage_sources(config, "bench"), "bench")
    return config


def score(config: DecayrecConfig, decay: dict[str, Any], protocol: str, split: str) -> dict:
    trial = config.model_copy(update={"decay": DecayConfig.model_validate(decay)})
    return backtest(trial, config.as_of_time(AS_OF), protocol, split=split)


def choose(config: DecayrecConfig, points: list[dict[str, Any]], protocol: str) -> tuple:
    """The point with the best validation NDCG@10, and that figure."""
    scored = [(score(config, p, protocol, "validation")["model"]["ndcg@10"], p) for p in points]
    best = max(scored, key=lambda sp: sp[0])
    return best[1], best[0]


def describe(decay: dict[str, Any]) -> str:
    from decayrec.evaluation.tune import describe as line

    l2 = DecayrecConfig().model.l2
    return line({"name": "ease", "l2": l2}, decay).removeprefix(f"ease λ {l2:g}, ")


def table(ratings: DecayrecConfig, both: DecayrecConfig, protocol: str) -> list[dict]:
    base = {**DecayConfig().model_dump(mode="json"), **STILL}
    rows: list[dict] = []

    def add(label: str, config: DecayrecConfig, decay: dict, validation: float) -> None:
        started = time.perf_counter()
        result = score(config, decay, protocol, "test")
        m, p = result["model"], result["popularity"]
        rows.append(
            {
                "protocol": protocol,
                "variant": label,
                "chosen": describe(decay),
                "validation_ndcg@10": round(validation, 4),
                "ndcg@10": round(m["ndcg@10"], 4),
                "recall@10": round(m["recall@10"], 4),
                "popularity_ndcg@10": round(p["ndcg@10"], 4),
                "users": result["n_eval_users"],
                "seconds": round(time.perf_counter() - started, 1),
                "decay": decay,
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "decay"}), flush=True)

    add("no time", ratings, base, choose(ratings, [base], protocol)[1])
    by_kernel: dict[str, list[dict]] = {}
    for point in KERNEL_GRID:
        if point["kernel"] != "none" and "reference" not in point:
            by_kernel.setdefault(point["kernel"], []).append({**base, **_kernel_reset(point)})
    best_kernel: tuple[float, dict] | None = None
    for kernel, points in by_kernel.items():
        decay, val = choose(ratings, points, protocol)
        add(f"{kernel}, ages from the user's last event", ratings, decay, val)
        if best_kernel is None or val > best_kernel[0]:
            best_kernel = (val, decay)
    assert best_kernel is not None
    as_of_points = [
        {
            **base,
            **_kernel_reset({"kernel": "exponential", "half_life_days": h}),
            "reference": "as_of",
        }
        for h in (90, 365, 1095)
    ]
    decay, val = choose(ratings, as_of_points, protocol)
    add("exponential, ages from the as-of date", ratings, decay, val)

    recency, val = choose(ratings, [{**base, **p} for p in RECENCY_GRID[1:]], protocol)
    add("recency (items taken up since)", ratings, recency, val)
    combined = {**best_kernel[1], "recency_events": recency["recency_events"]}
    pair_points = [{**combined, **p} for p in PAIR_GRID]  # includes the combination alone
    combined_val = choose(ratings, [combined], protocol)[1]
    add("recency + best kernel", ratings, combined, combined_val)
    pairs, val = choose(ratings, pair_points[1:], protocol)
    add("recency + best kernel + gap-decayed item pairs", ratings, pairs, val)
    best, best_val = max([(combined_val, combined), (val, pairs)], key=lambda vp: vp[0])[::-1]
    drift = [{**best, **p} for p in DYNAMICS_GRID if p.get("user_decay") == "drift"]
    decay, val = choose(ratings, drift, protocol)
    add("+ per-user drift memory", ratings, decay, val)

    type_points = []
    for key in ("type_weights", "type_memory"):
        for factor in (0.25, 4.0):
            changed = dict(best[key])
            changed["tag"] = changed.get("tag", 1.0) * factor
            type_points.append({**best, key: changed})
    decay, val = choose(both, [best, *type_points], protocol)
    add("per event type (ratings + tags)", both, decay, val)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--movielens", default="../shared/data/movielens-small")
    parser.add_argument("--protocols", nargs="+", default=["user_time", "global_time"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="decayrec-decay-"))
    ratings = lake(root / "ratings", args.movielens, with_tags=False)
    both = lake(root / "both", args.movielens, with_tags=True)
    rows = [r for protocol in args.protocols for r in table(ratings, both, protocol)]
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    print("\n| protocol | variant | chosen on validation | NDCG@10 | Recall@10 | users |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['protocol']} | {r['variant']} | {r['chosen']} | {r['ndcg@10']:.4f} | "
            f"{r['recall@10']:.4f} | {r['users']} |"
        )


if __name__ == "__main__":
    main()
