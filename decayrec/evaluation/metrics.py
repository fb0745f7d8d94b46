"""Top-K ranking metrics with binary relevance, as in DESIGN.md.

For a user with truth set T and ranked list r_1..r_K (hit_j = [r_j in T]):

    NDCG@K    = sum_j hit_j / log2(j + 1)  /  sum_{j <= min(|T|, K)} 1 / log2(j + 1)
    Recall@K  = sum_j hit_j / min(|T|, K)
    MAP@K     = (1 / min(|T|, K)) * sum_j hit_j * precision@j
    HitRate@K = [any hit]

and catalog coverage@K = distinct items in all top-K lists / items in the catalogue.
Users are averaged with equal weight.
"""

from __future__ import annotations

import numpy as np


def ranking_metrics(
    ranked: np.ndarray, truth_sets: list[set[int]], ks: list[int], n_catalog: int
) -> dict[str, float]:
    """`ranked`: (n_users x K) item indices padded with -1; `truth_sets[u]`: relevant items."""
    n_users = ranked.shape[0]
    if n_users == 0:
        return {"n_users": 0}
    max_k = ranked.shape[1]
    n_truth = np.array([len(t) for t in truth_sets], dtype=np.float64)
    # hit = (user, item) among the truth pairs: one sorted membership test for all users
    truth_user = np.repeat(np.arange(n_users, dtype=np.int64), n_truth.astype(np.int64))
    truth_item = np.fromiter(
        (i for t in truth_sets for i in t), dtype=np.int64, count=int(n_truth.sum())
    )
    span = int(max(ranked.max(initial=0), truth_item.max(initial=0))) + 1
    listed = np.arange(n_users, dtype=np.int64)[:, None] * span + ranked
    hits = np.isin(listed, truth_user * span + truth_item) & (ranked >= 0)
    discount = 1.0 / np.log2(np.arange(2, max_k + 2))
    ideal_of = np.concatenate(([0.0], np.cumsum(discount)))  # ideal DCG of n hits, n <= K
    out: dict[str, float] = {"n_users": int(n_users)}
    for k in ks:
        h = hits[:, :k]
        denom = np.minimum(n_truth, k)
        ideal = ideal_of[np.minimum(denom, max_k).astype(np.int64)]
        dcg = (h * discount[:k]).sum(axis=1)
        precision_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
        out[f"ndcg@{k}"] = float(np.mean(np.where(ideal > 0, dcg / np.maximum(ideal, 1e-12), 0)))
        out[f"recall@{k}"] = float(np.mean(h.sum(axis=1) / np.maximum(denom, 1)))
        out[f"map@{k}"] = float(np.mean((h * precision_at).sum(axis=1) / np.maximum(denom, 1)))
        out[f"hitrate@{k}"] = float(np.mean(h.any(axis=1)))
        shown = ranked[:, :k]
        out[f"coverage@{k}"] = float(len(np.unique(shown[shown >= 0])) / max(n_catalog, 1))
    return out


def figure(value: float | None, digits: int = 3) -> str:
    """A figure for people: 3 significant digits, scientific when tiny or huge."""
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{float(value):.{digits}g}"


def ndcg_line(model: float | None, popularity: float | None, users: int | None) -> str:
    """NDCG@10 of a model against popularity, in words."""
    return f"NDCG@10 {figure(model)} vs popularity {figure(popularity)} on {users} users"
