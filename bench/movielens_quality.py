"""Quality on MovieLens-small, user-time protocol, ratings only (DESIGN.md's yardstick).

Hyperparameters (EASE lambda, decay half-life) are chosen on a validation split carved
out of the training data the same way (each user's last 5 training items), never on the
test window; the winners are then measured once on the test split.

    python bench/movielens_quality.py [--movielens ../shared/data/movielens-small]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from datetime import date
from pathlib import Path

from decayrec.config import (
    DecayConfig,
    DecayrecConfig,
    EvaluationConfig,
    ModelConfig,
    movielens_sources,
)
from decayrec.evaluate import backtest
from decayrec.features import prepare_decay_tables
from decayrec.ingest import load_batches, open_lake, stage_sources
from decayrec.sqlfiles import sql

AS_OF = date(2018, 10, 1)


def ratings_config(data_dir: Path, movielens: str, **updates) -> DecayrecConfig:
    ratings = [s for s in movielens_sources(movielens) if s.event_type == "rating"]
    return DecayrecConfig(
        data_dir=data_dir,
        sources=ratings,
        evaluation=EvaluationConfig(protocols=["user_time"]),
        **updates,
    )


def validation_lake(config: DecayrecConfig, out_dir: Path) -> DecayrecConfig:
    """A lake holding the training part of the user-time split only."""
    con = open_lake(config)
    prepare_decay_tables(con, config.decay)
    ev = config.evaluation
    con.execute(
        "create temp table truth as " + sql("evaluation/user_time_holdout"),
        {
            "as_of": config.as_of_time(AS_OF),
            "min_user_events": ev.min_user_events,
            "holdout_items": ev.holdout_items,
        },
    )
    training = con.sql(
        "select e.* from events as e anti join truth as t "
        "on t.user_id = e.user_id and t.item_id = e.item_id"
    ).to_arrow_table()
    con.close()
    val_config = config.model_copy(update={"data_dir": out_dir})
    val = open_lake(val_config)
    val.register("training", training)
    val.execute("insert into events select * from training")
    val.close()
    return val_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--movielens", default="../shared/data/movielens-small")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="decayrec-quality-"))
    config = ratings_config(root / "test", args.movielens)
    load_batches(config, stage_sources(config, "bench"), "bench")
    val_config = validation_lake(config, root / "validation")
    as_of = config.as_of_time(AS_OF)

    grid_l2 = [50.0, 100.0, 200.0, 400.0, 800.0]
    grid_decay = [
        ("none", 1.0),
        ("exponential", 90.0),
        ("exponential", 365.0),
        ("exponential", 1095.0),
        ("exponential", 3650.0),
    ]
    trials = []
    for (kernel, half_life), l2 in itertools.product(grid_decay, grid_l2):
        cfg = val_config.model_copy(
            update={
                "decay": DecayConfig(kernel=kernel, half_life_days=half_life),
                "model": ModelConfig(l2=l2),
            }
        )
        result = backtest(cfg, as_of, "user_time")
        trials.append(
            {
                "kernel": kernel,
                "half_life_days": half_life,
                "l2": l2,
                "val_ndcg@10": result["model"]["ndcg@10"],
            }
        )
        print(json.dumps(trials[-1]), flush=True)

    def best(kernels: set[str]) -> dict:
        return max((t for t in trials if t["kernel"] in kernels), key=lambda t: t["val_ndcg@10"])

    rows = []
    for label, kernels in (
        ("EASE, no decay", {"none"}),
        ("EASE, exponential decay", {"exponential"}),
    ):
        chosen = best(kernels)
        cfg = config.model_copy(
            update={
                "decay": DecayConfig(
                    kernel=chosen["kernel"], half_life_days=chosen["half_life_days"]
                ),
                "model": ModelConfig(l2=chosen["l2"]),
            }
        )
        started = time.perf_counter()
        result = backtest(cfg, as_of, "user_time")
        seconds = time.perf_counter() - started
        if not rows:
            pop = result["popularity"]
            rows.append(("most popular (decayed)", "-", pop))
        params = f"lambda={chosen['l2']:g}" + (
            f", half-life {chosen['half_life_days']:g} d" if chosen["kernel"] != "none" else ""
        )
        rows.append((label, params, result["model"], result["train_seconds"], seconds))
        n_users = result["n_eval_users"]
    print(f"\nMovieLens-small, user-time protocol, ratings only, {n_users} users")
    print("| model | chosen on validation | NDCG@10 | Recall@10 | MAP@10 | coverage@10 | fit s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        label, params, m = row[:3]
        fit = f"{row[3]:.1f}" if len(row) > 3 else "0.0"
        print(
            f"| {label} | {params} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | "
            f"{m['map@10']:.4f} | {m['coverage@10']:.3f} | {fit} |"
        )


if __name__ == "__main__":
    main()
