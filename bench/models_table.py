"""Every model on MovieLens-small, user-time protocol, ratings only (DESIGN.md's yardstick).

Each model's hyperparameters are chosen on the validation split
(`backtest(..., split="validation")`: the test holdout removed, then the same protocol
applied to what is left), never on the test window; the winner is then measured once on
the test split. Decay: the default exponential kernel (half-life 365 d) for every model.

    python bench/models_table.py [--movielens ../shared/data/movielens-small]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

from movielens_quality import AS_OF, ratings_config

from decayrec.config import model_section
from decayrec.evaluation.backtest import backtest
from decayrec.lake.ingest import load_batches, stage_sources

GRIDS: dict[str, list[dict]] = {
    "ease": [{"l2": l2} for l2 in (50.0, 100.0, 200.0, 400.0)],
    "itemknn": [
        {"similarity": s, "neighbours": n} for s in ("cosine", "jaccard", "lift") for n in (50, 200)
    ],
    "ials": [
        {"factors": f, "reg": r, "alpha": a, "iterations": 10}
        for f, r, a in ((64, 1.0, 10.0), (128, 10.0, 10.0), (128, 10.0, 3.0), (256, 30.0, 10.0))
    ],
    # one setting fixed beforehand (no outer grid: each fit costs minutes on 2 cores); the
    # epoch is chosen inside fit on the training users' own last events
    "sasrec": [
        {
            "seq_len": 50,
            "seq_history": 1000,
            "seq_dropout": 0.2,
            "seq_batch": 64,
            "seq_lr": 0.002,
            "seq_epochs": 80,
            "seq_patience": 8,
        }
    ],
}
LABELS = {
    "ease": "EASE",
    "itemknn": "item-item kNN",
    "ials": "iALS (CG, fold-in scoring)",
    "sasrec": "time-aware SASRec",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--movielens", default="../shared/data/movielens-small")
    parser.add_argument("--models", nargs="*", default=list(GRIDS))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="decayrec-models-"))
    config = ratings_config(root, args.movielens)
    load_batches(config, stage_sources(config, "bench"), "bench")
    as_of = config.as_of_time(AS_OF)

    rows = []
    for name in args.models:
        trials = [(float("nan"), GRIDS[name][0])] if len(GRIDS[name]) == 1 else []
        for params in GRIDS[name] if len(GRIDS[name]) > 1 else []:
            cfg = config.model_copy(update={"model": model_section({"name": name, **params})})
            result = backtest(cfg, as_of, "user_time", split="validation")
            trials.append((result["model"]["ndcg@10"], params))
            print(json.dumps({"model": name, **params, "val_ndcg@10": trials[-1][0]}), flush=True)
        val_ndcg, params = max(trials, key=lambda t: t[0])
        cfg = config.model_copy(update={"model": model_section({"name": name, **params})})
        result = backtest(cfg, as_of, "user_time")
        if not rows:
            rows.append(("most popular (decayed)", "-", "-", result["popularity"], 0.0))
        chosen = ", ".join(f"{k}={v}" for k, v in params.items())
        rows.append((LABELS[name], chosen, val_ndcg, result["model"], result["train_seconds"]))
        n_users = result["n_eval_users"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\nMovieLens-small, user-time protocol, ratings only, {n_users} test users")
    print(
        "| model | chosen on validation | val NDCG@10 | NDCG@10 | Recall@10 | coverage@10 "
        "| train s |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, chosen, val, m, seconds in rows:
        val_s = f"{val:.4f}" if isinstance(val, float) and val == val else "-"
        print(
            f"| {label} | {chosen} | {val_s} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | "
            f"{m['coverage@10']:.3f} | {seconds:.1f} |"
        )
    print(f"peak RSS of the whole benchmark process: {peak:.1f} GB")


if __name__ == "__main__":
    main()
