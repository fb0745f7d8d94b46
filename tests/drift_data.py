"""A compact population with known drift speeds, for the dynamic-decay tests.

Each user has a period: every `period` days (random phase) they move to a random cluster
of items and draw events from it, with Zipf-like popularity inside the cluster."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

T0 = datetime(2024, 1, 1, tzinfo=UTC)
AS_OF = T0 + timedelta(days=361)


def drift_events(
    n_users: int = 800,
    fast_share: float = 0.5,
    fast_days: float = 30.0,
    slow_days: float = 1000.0,
    n_clusters: int = 8,
    items_per_cluster: int = 40,
    events_per_user: int = 80,
    days: float = 360.0,
    seed: int = 5,
) -> tuple[pa.Table, np.ndarray]:
    """Events over `days` days and, per user, whether they are a fast drifter."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items_per_cluster + 1) ** 0.8
    popularity /= popularity.sum()
    fast = rng.random(n_users) < fast_share
    users, items, ages = [], [], []
    for user in range(n_users):
        t = np.sort(rng.uniform(0, days, events_per_user))
        period = fast_days if fast[user] else slow_days
        phase = rng.uniform(0, period)
        clusters = rng.integers(0, n_clusters, int(days // period) + 3)
        cluster = clusters[((t + phase) // period).astype(int)]
        item = cluster * items_per_cluster + rng.choice(
            items_per_cluster, events_per_user, p=popularity
        )
        users += [f"u{user}"] * events_per_user
        items += [f"i{i}" for i in item]
        ages += list(t)
    stamps = [T0 + timedelta(days=float(d)) for d in ages]
    table = pa.table(
        {
            "user_id": users,
            "item_id": items,
            "event_type": ["view"] * len(users),
            "event_ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "value": pa.array([None] * len(users), pa.float64()),
        }
    )
    return table, fast
