"""Quality of the default nightly on MovieLens-small, ratings only (DESIGN.md's yardstick),
on both protocols: the lists it publishes, decayed popularity, and EASE with no time in
the weights, each the backtest of the test split (= the published lists' measure, see
tests/test_one_computation.py and ../shared/eval/score_published.py).

    python bench/movielens_quality.py [--movielens ../shared/data/movielens-small]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

from decayrec.config import DecayConfig, DecayrecConfig, EvaluationConfig, movielens_sources
from decayrec.evaluation.backtest import backtest
from decayrec.lake.ingest import load_batches, stage_sources

AS_OF = date(2018, 10, 1)
NO_TIME = DecayConfig(kernel="none", recency_events=0.0, pair_half_life_days=0.0)


def ratings_config(data_dir: Path, movielens: str, **updates) -> DecayrecConfig:
    ratings = [s for s in movielens_sources(movielens) if s.event_type == "rating"]
    return DecayrecConfig(
        data_dir=data_dir,
        sources=ratings,
        evaluation=EvaluationConfig(protocols=["user_time"]),
        **updates,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--movielens", default="../shared/data/movielens-small")
    args = parser.parse_args()
    config = ratings_config(Path(tempfile.mkdtemp(prefix="decayrec-quality-")), args.movielens)
    load_batches(config, stage_sources(config, "bench"), "bench")
    as_of = config.as_of_time(AS_OF)
    print("| protocol (users) | lists | NDCG@10 | Recall@10 | MAP@10 | coverage@10 | s |")
    print("|---|---|---|---|---|---|---|")
    for protocol in ("user_time", "global_time"):
        for label, cfg in (
            ("default nightly", config),
            ("EASE, no time in the weights", config.model_copy(update={"decay": NO_TIME})),
        ):
            started = time.perf_counter()
            result = backtest(cfg, as_of, protocol)
            seconds = time.perf_counter() - started
            rows = [(label, result["model"])]
            if label == "default nightly":
                rows.insert(0, ("decayed popularity", result["popularity"]))
            for name, m in rows:
                print(
                    f"| {protocol} ({result['n_eval_users']}) | {name} | {m['ndcg@10']:.4f} | "
                    f"{m['recall@10']:.4f} | {m['map@10']:.4f} | {m['coverage@10']:.3f} | "
                    f"{seconds:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
