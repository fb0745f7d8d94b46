"""SASRec alone on MovieLens-small's user-last-k split, on VALIDATION by default.

The split of ../shared/eval (split.py) is applied twice: its training events are split
again (the same protocol) into validation-training events and validation truth. The
model is fitted on the inner training events (as the nightly snapshot holds them: each
user's last seq_history events, reference time the day after the last event) and
scored with ../shared/eval/metrics.py. `--test` scores the outer split instead (the
final check only; never tune on it).

  PYTHONPATH=$PWD .venv/bin/python bench/sasrec_quality.py [--test] [--set epochs=10 ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

import numpy as np
import torch

from decayrec.config import DecayrecConfig
from decayrec.lake.matrix import EventSequences, InteractionMatrix
from decayrec.models.sasrec import TimeSASRec

EVAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "eval")


def matrix_of(train, history: int) -> InteractionMatrix:
    """The snapshot the nightly run builds: users and items indexed, each user's last
    `history` events oldest first, every user recommended to the day after the last event."""
    train = train.sort_values(["user", "ts", "item"], kind="mergesort")
    users = np.unique(train["user"].to_numpy())
    items = np.unique(train["item"].to_numpy())
    u = np.searchsorted(users, train["user"].to_numpy())
    i = np.searchsorted(items, train["item"].to_numpy())
    ts = train["ts"].to_numpy().astype(np.float64)
    ptr = np.searchsorted(u, np.arange(len(users) + 1))
    rank_from_end = ptr[u + 1] - 1 - np.arange(len(u))
    keep = rank_from_end < history
    u, i, ts = u[keep], i[keep], ts[keep]
    last = dt.datetime.fromtimestamp(train["ts"].max(), dt.UTC)
    as_of = dt.datetime.combine((last + dt.timedelta(days=1)).date(), dt.time(), dt.UTC)
    pairs = np.unique(np.stack([u, i]), axis=1)
    return InteractionMatrix(
        user_ids=users.astype(object),
        item_ids=items.astype(object),
        rows=pairs[0],
        cols=pairs[1],
        weights=np.ones(pairs.shape[1]),
        popularity=np.bincount(pairs[1], minlength=len(items)).astype(np.float64),
        sequences=EventSequences(
            ptr=np.searchsorted(u, np.arange(len(users) + 1)).astype(np.int64),
            items=i.astype(np.int64),
            times=ts,
            ref_times=np.full(len(users), as_of.timestamp()),
        ),
    )


def lists(model: TimeSASRec, matrix: InteractionMatrix, seen: dict, users) -> dict:
    index = {int(x): n for n, x in enumerate(matrix.user_ids)}
    rows = np.array([index[u] for u in users if u in index], dtype=np.int64)
    recs = {}
    for start in range(0, len(rows), 512):
        batch = rows[start : start + 512]
        scores = model.score_users(matrix, batch)
        for r, row in enumerate(batch.tolist()):
            user = int(matrix.user_ids[row])
            cols = np.searchsorted(matrix.item_ids.astype(np.int64), list(seen.get(user, ())))
            scores[r, torch.from_numpy(np.asarray(cols, dtype=np.int64))] = float("-inf")
        top = torch.topk(scores, 10, dim=1).indices.numpy()
        for r, row in enumerate(batch.tolist()):
            recs[int(matrix.user_ids[row])] = [int(matrix.item_ids[c]) for c in top[r]]
    return recs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--test", action="store_true", help="score the outer (test) split")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SETTING=JSON",
        help="a model setting of SASRecConfig, e.g. seq_dropout=0.3",
    )
    ap.add_argument("--out", default="/tmp/s15/quality.jsonl")
    a = ap.parse_args()
    sys.path.insert(0, EVAL)
    from metrics import evaluate
    from split import load, user_last_k

    torch.set_num_threads(2)
    split = user_last_k(load("movielens-small"))
    if not a.test:
        split = user_last_k(split.train)
    settings = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
    config = DecayrecConfig.model_validate({"model": {"name": "sasrec", **settings}})
    matrix = matrix_of(split.train, config.model.seq_history)
    t0 = time.perf_counter()
    model = TimeSASRec.from_config(config, torch.device("cpu")).fit(matrix)
    fit_s = time.perf_counter() - t0
    recs = lists(model, matrix, split.seen(), split.users)
    m = evaluate(recs, split.truth, n_catalog=matrix.shape[1])
    res = {
        "split": "test" if a.test else "validation",
        "settings": settings,
        "ndcg@10": round(m["ndcg@10"], 4),
        "recall@10": round(m["recall@10"], 4),
        "fit_s": round(fit_s, 1),
        "epochs": len(model.history),
        "best_inner": max((h["ndcg@10"] for h in model.history if "ndcg@10" in h), default=None),
        "load": os.getloadavg()[0],
    }
    print(json.dumps(res))
    with open(a.out, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
