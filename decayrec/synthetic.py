"""Synthetic interaction events with known interest drift, for the demo and tests.

Items belong to clusters and have power-law popularity inside their cluster. Each user
starts in one cluster and moves to another at a user-specific time; events before the
move come from the first cluster, events after it from the second, so recent events
predict the future better than old ones. Events form funnels (view -> click -> cart
-> purchase). Deterministic for a given seed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FUNNEL = ["view", "click", "cart", "purchase"]
FUNNEL_CONTINUE = [0.35, 0.3, 0.5]  # chance a view becomes a click, a click a cart, ...


def generate_events(
    n_users: int = 2_000,
    n_items: int = 1_000,
    n_views: int = 60_000,
    n_clusters: int = 8,
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    end: datetime = datetime(2024, 12, 31, tzinfo=UTC),
    seed: int = 7,
) -> pa.Table:
    """Events as an Arrow table with columns user_id, item_id, event_type, event_ts, value."""
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, n_clusters, n_items)
    cluster_items = [np.flatnonzero(item_cluster == c) for c in range(n_clusters)]
    cluster_probs = []
    for items in cluster_items:
        weights = 1.0 / np.arange(1, len(items) + 1) ** 1.1
        cluster_probs.append(weights / weights.sum())
    first = rng.integers(0, n_clusters, n_users)
    second = (first + rng.integers(1, n_clusters, n_users)) % n_clusters
    t0, t1 = start.timestamp(), end.timestamp()
    move_at = rng.uniform(t0 + 0.3 * (t1 - t0), t1, n_users)

    users = rng.integers(0, n_users, n_views)
    ts = rng.uniform(t0, t1, n_views)
    cluster = np.where(ts < move_at[users], first[users], second[users])
    items = np.empty(n_views, dtype=np.int64)
    for c in range(n_clusters):
        mask = cluster == c
        items[mask] = rng.choice(cluster_items[c], size=int(mask.sum()), p=cluster_probs[c])

    cols = {"user": [users], "item": [items], "ts": [ts], "type": [np.zeros(n_views, np.int8)]}
    alive = np.ones(n_views, dtype=bool)
    for step, p in enumerate(FUNNEL_CONTINUE, start=1):
        alive &= rng.random(n_views) < p
        cols["user"].append(users[alive])
        cols["item"].append(items[alive])
        cols["ts"].append(ts[alive] + 60.0 * step + rng.uniform(0, 600, int(alive.sum())))
        cols["type"].append(np.full(int(alive.sum()), step, np.int8))
    user = np.concatenate(cols["user"])
    item = np.concatenate(cols["item"])
    stamp = np.concatenate(cols["ts"])
    kind = np.concatenate(cols["type"])
    order = np.lexsort((kind, stamp))
    event_ts = (stamp[order] * 1e6).astype("int64")
    return pa.table(
        {
            "user_id": pa.array([f"u{u}" for u in user[order]], pa.string()),
            "item_id": pa.array([f"i{i}" for i in item[order]], pa.string()),
            "event_type": pa.array(np.array(FUNNEL)[kind[order]], pa.string()),
            "event_ts": pa.array(event_ts, pa.timestamp("us", tz="UTC")),
            # a purchase carries a quantity; other events have no value
            "value": pa.array(np.ones(len(order)), pa.float64(), mask=kind[order] != 3),
        }
    )


def write_demo_events(path: str | Path, seed: int = 7) -> Path:
    """Write the demo events to a Parquet file (once: an existing file is kept)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(generate_events(seed=seed), path)
    return path
