"""Top-K lists per user: the model where it has something to say, decayed popularity otherwise.

For each user, items already in the user's history are never recommended. Model rows
are the items with a positive model score, best first; a list that comes up short
(or the whole list, for a user with fewer than `min_history` items) is topped up by
decayed popularity, and each row says which produced it (`source`). A user is given
fewer than K rows only when fewer than K items remain unseen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models.base import Input
from decayrec.models.device import csr_row_indices, user_rows
from decayrec.progress import Progress

if TYPE_CHECKING:
    from decayrec.config import DecayrecConfig

SOURCE_MODEL = "model"
SOURCE_FALLBACK = "fallback"


log = logging.getLogger(__name__)
# runs scoring at least this many users log their progress (and show a bar on a terminal)
PROGRESS_USERS = 200_000


class Scorer(Protocol):
    """A model, or a wrapper of one, as `recommend` scores with it: its declared `input`
    says whether it reads the batch's rows, `score(x)` (CSR or dense), or the users'
    events, `score_users(matrix, users)` (decayrec.models.base)."""

    name: str
    input: Input


def model_scores(
    model: Scorer, matrix: InteractionMatrix, users: np.ndarray, x: torch.Tensor
) -> torch.Tensor:
    """Scores (users x items) of a batch: what the model's declared input says it reads,
    the users' events or their rows `x` (built as it declares: see `recommend`)."""
    if model.input is Input.SEQUENCES:
        return model.score_users(matrix, users).to(x.device)
    return model.score(x)


def put_model_keys(
    key: torch.Tensor, scores: torch.Tensor, pop_key: torch.Tensor, uses_model: torch.Tensor
) -> None:
    """key = the model's score where it is positive (for users with `uses_model`), else
    the popularity key. `scores` is dense, or sparse CSR (absent entries are 0: only the
    entries are written, no dense copy of the scores is made)."""
    if scores.layout == torch.sparse_csr:
        key.copy_(pop_key.expand_as(key))
        row = csr_row_indices(scores)
        col, value = scores.col_indices(), scores.values().to(torch.float32)
        if not bool(uses_model.all()):
            value = torch.where(uses_model[row], value, 0.0)
        # every entry written (no boolean compaction, which costs more than the writes)
        flat = row * key.shape[1] + col
        key.view(-1).index_copy_(0, flat, torch.where(value > 0, value, pop_key[col]))
        return
    scores = scores.to(torch.float32)
    torch.where((scores > 0) & uses_model[:, None], scores, pop_key, out=key)


@dataclass
class Lists:
    """Recommendation lists in long form: one entry per (user, rank)."""

    user_idx: np.ndarray
    rank: np.ndarray  # 1-based
    item_idx: np.ndarray
    score: np.ndarray
    from_model: np.ndarray  # bool

    def to_arrow(self, matrix: InteractionMatrix) -> pa.Table:
        return pa.table(
            {
                "user_id": pa.array(matrix.user_ids[self.user_idx], pa.string()),
                "rank": pa.array(self.rank, pa.int32()),
                "item_id": pa.array(matrix.item_ids[self.item_idx], pa.string()),
                "score": pa.array(self.score, pa.float64()),
                "source": pa.array(
                    np.where(self.from_model, SOURCE_MODEL, SOURCE_FALLBACK), pa.string()
                ),
            }
        )

    def as_matrix(self, n_users: int, k: int) -> np.ndarray:
        """Item indices as an (n_users x k) array padded with -1, row = position in users."""
        out = np.full((n_users, k), -1, dtype=np.int64)
        keep = self.rank <= k
        out[self.user_pos[keep], self.rank[keep] - 1] = self.item_idx[keep]
        return out

    user_pos: np.ndarray | None = None  # position of each entry's user in the scored order


def configured_lists(
    config: DecayrecConfig,
    model: Scorer | None,
    matrix: InteractionMatrix,
    device: torch.device | str,
    k: int | None = None,
    users: np.ndarray | None = None,
) -> Lists:
    """`recommend` with the configured list length (unless `k`), fallback threshold,
    batch size and memory budget."""
    return recommend(
        model,
        matrix,
        k or config.k,
        users=users,
        min_history=config.model.min_history,
        user_batch=config.model.user_batch,
        device=device,
        memory_mb=config.model.score_memory_mb,
    )


def recommend(
    model: Scorer | None,
    matrix: InteractionMatrix,
    k: int,
    users: np.ndarray | None = None,
    min_history: int = 1,
    user_batch: int = 2048,
    device: torch.device | str = "cpu",
    memory_mb: float = 1024.0,
) -> Lists:
    """Top-k unseen items for `users` (default: every user of the matrix), in batches of
    at most `user_batch` users and about `memory_mb` of dense (batch x items) tensors.

    `model=None` gives the pure decayed-popularity baseline.
    """
    device = torch.device(device)
    n_users, n_items = matrix.shape
    users = np.arange(n_users) if users is None else np.asarray(users, dtype=np.int64)
    ptr = matrix.row_pointer()
    history = np.diff(ptr)[users]
    # about six float32 (batch x items) tensors are alive at once: rows, key, scores, masks
    user_batch = max(1, min(user_batch, int(memory_mb * 2**20 // (24 * max(n_items, 1)))))
    k_eff = min(k, n_items)
    # Popularity mapped into [-2, -1]: always below any positive model score.
    pop = torch.from_numpy(matrix.popularity.astype(np.float64)).to(device)
    pop_key = (pop / pop.max().clamp_min(1e-300) - 2.0).to(torch.float32) if n_items else pop
    pop_score = (pop / pop.max().clamp_min(1e-300)).to(torch.float32) if n_items else pop

    # the rows as CSR (no dense batch built) unless the model declares dense rows; a
    # sequence model reads events, the rows only mask what the users have seen
    csr = model is None or model.input is not Input.DENSE
    if model is None:
        # popularity alone: only the k + (most items any user has seen) most popular items
        # can make a list, so the top-k runs over those columns, not the whole catalogue
        n_cand = min(n_items, k_eff + (int(history.max()) if len(history) else 0))
        candidates = torch.argsort(pop_key, descending=True, stable=True)[:n_cand]
        position = torch.full((n_items,), -1, dtype=torch.long, device=device)
        position[candidates] = torch.arange(n_cand, device=device)
    parts: list[tuple[np.ndarray, ...]] = []
    key_buffer: torch.Tensor | None = None
    progress = None
    if len(users) >= PROGRESS_USERS:  # a line about every tenth of the users
        every = max(1, len(users) // 10 // user_batch) * user_batch
        progress = Progress("scored users", len(users), log, every=every, unit="user")
    for start in range(0, len(users), user_batch):
        batch = users[start : start + user_batch]
        x, rows, cols = user_rows(matrix, ptr, batch, matrix.row_weights, device, csr)
        if model is not None:
            # one (batch x items) buffer for all batches: a fresh 160 MB tensor per batch
            # costs more in page faults than the top-k itself (measured at 20k items)
            if key_buffer is None:
                key_buffer = torch.empty(len(batch), n_items, device=device)
            key = key_buffer[: len(batch)]
            model_score = model_scores(model, matrix, batch, x)
            uses_model = torch.from_numpy(history[start : start + len(batch)] >= min_history)
            put_model_keys(key, model_score, pop_key, uses_model.to(device))
            key[rows, cols] = float("-inf")
            top_key, top_item = torch.topk(key, k_eff, dim=1)
        else:
            key = pop_key[candidates].expand(len(batch), n_cand).clone()
            seen = position[cols]
            key[rows[seen >= 0], seen[seen >= 0]] = float("-inf")
            top_key, top_position = torch.topk(key, k_eff, dim=1)
            top_item = candidates[top_position]
        valid = torch.isfinite(top_key)
        from_model = top_key > -0.5  # model keys are > 0, popularity keys in [-2, -1]
        score = torch.where(from_model, top_key, pop_score[top_item])
        pos = np.arange(start, start + len(batch))
        valid_np = valid.cpu().numpy()
        ranks = np.broadcast_to(np.arange(1, k_eff + 1), valid_np.shape)
        parts.append(
            (
                np.broadcast_to(batch[:, None], valid_np.shape)[valid_np],
                np.broadcast_to(pos[:, None], valid_np.shape)[valid_np],
                ranks[valid_np],
                top_item.cpu().numpy()[valid_np],
                score.cpu().numpy().astype(np.float64)[valid_np],
                from_model.cpu().numpy()[valid_np],
            )
        )
        if progress is not None:
            progress.update(len(batch))
    if progress is not None:
        progress.close()
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Lists(empty, empty, empty, np.zeros(0), np.zeros(0, bool), empty)
    user_idx, user_pos, rank, item_idx, score, from_model = (
        np.concatenate(p) for p in zip(*parts, strict=True)
    )
    return Lists(
        user_idx=user_idx,
        rank=rank,
        item_idx=item_idx,
        score=score,
        from_model=from_model,
        user_pos=user_pos,
    )
