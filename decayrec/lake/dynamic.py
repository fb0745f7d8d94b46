"""Per-user dynamic decay: users whose tastes move fast forget faster.

A user's drift is how much their recent items differ from their older ones:

    drift_u = 1 - cos( mean_{i in old(u)} v_i , mean_{i in recent(u)} v_i )

where v_i are item vectors from a rank-`RANK` truncated SVD of the user-item incidence
matrix (items that are consumed by the same users point the same way), recent(u) is
the last RECENT_SHARE of the user's distinct items by time and old(u) the rest. The
user's memory stretches every kernel's time axis (K(age / memory)):

    memory_u = clamp( (median_u' drift_u' / drift_u) ^ drift_strength,
                      user_memory_min, user_memory_max )

so a user drifting more than the median user forgets faster, one drifting less
remembers longer, and drift_strength = 0 switches it off. Users with fewer than
MIN_ITEMS distinct items keep memory 1 (their drift cannot be told from noise).
"""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import torch

from decayrec.config import DecayConfig
from decayrec.lake.matrix import InteractionMatrix
from decayrec.lake.session import LakeBuild

RANK = 32
RECENT_SHARE = 0.3
MIN_ITEMS = 6


def item_vectors(matrix: InteractionMatrix, rank: int = RANK, seed: int = 0) -> np.ndarray:
    """Unit item vectors (items x rank) from a truncated SVD of the 0/1 user-item matrix."""
    n_users, n_items = matrix.shape
    q = max(1, min(rank, n_users - 1, n_items - 1))
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # svd_lowrank is randomised: keep runs reproducible
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse invariant checks")
            x = torch.sparse_coo_tensor(
                torch.from_numpy(np.vstack([matrix.rows, matrix.cols])),
                torch.ones(len(matrix.rows), dtype=torch.float32),
                (n_users, n_items),
            ).coalesce()
            _, s, v = torch.svd_lowrank(x, q=q, niter=3)
    finally:
        torch.random.set_rng_state(generator_state)
    vectors = (v * s.sqrt()).numpy().astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def user_drift(matrix: InteractionMatrix, last_ts: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Drift per user (NaN for users with fewer than MIN_ITEMS items).

    `last_ts` holds, per matrix entry, the time of the pair's last event (any unit)."""
    n_users = matrix.shape[0]
    ptr = matrix.row_pointer()
    counts = np.diff(ptr)
    # position of each entry within its user's items, ordered by time
    order = np.lexsort((last_ts, matrix.rows))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order)) - np.repeat(ptr[:-1], counts)
    n_recent = np.maximum(1, np.round(RECENT_SHARE * counts).astype(np.int64))
    recent = position >= (counts - n_recent)[matrix.rows]
    dims = vectors.shape[1]
    old_sum = np.zeros((n_users, dims))
    new_sum = np.zeros((n_users, dims))
    np.add.at(old_sum, matrix.rows[~recent], vectors[matrix.cols[~recent]])
    np.add.at(new_sum, matrix.rows[recent], vectors[matrix.cols[recent]])
    cos = (old_sum * new_sum).sum(axis=1) / np.maximum(
        np.linalg.norm(old_sum, axis=1) * np.linalg.norm(new_sum, axis=1), 1e-12
    )
    drift = 1.0 - np.clip(cos, -1.0, 1.0)
    drift[counts < MIN_ITEMS] = np.nan
    return drift


def memory_from_drift(drift: np.ndarray, decay: DecayConfig) -> np.ndarray:
    known = drift[np.isfinite(drift)]
    memory = np.ones_like(drift)
    if len(known) == 0 or decay.drift_strength == 0:
        return memory
    median = float(np.median(known))
    finite = np.isfinite(drift)
    ratio = median / np.maximum(drift[finite], 1e-6)
    memory[finite] = np.clip(
        ratio**decay.drift_strength, decay.user_memory_min, decay.user_memory_max
    )
    return memory


def estimate_user_memory(
    matrix: InteractionMatrix, build: LakeBuild, decay: DecayConfig
) -> pa.Table:
    """(user_id, memory, drift) for every user of the matrix built in `build`'s temp tables."""
    last = build.sql(
        "select epoch(x.last_ts) as last_ts from interactions as x "
        "join user_index as u on u.user_id = x.user_id "
        "join item_index as i on i.item_id = x.item_id "
        "order by u.user_idx, i.item_idx"
    ).to_arrow_table()
    last_ts = last["last_ts"].to_numpy().astype(np.float64)
    drift = user_drift(matrix, last_ts, item_vectors(matrix))
    memory = memory_from_drift(drift, decay)
    return pa.table(
        {
            "user_id": pa.array(matrix.user_ids, pa.string()),
            "memory": pa.array(memory, pa.float64()),
            "drift": pa.array(drift, pa.float64(), mask=~np.isfinite(drift)),
        }
    )
