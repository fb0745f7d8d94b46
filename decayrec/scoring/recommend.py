"""Top-K lists per user: the model where it has something to say, decayed popularity otherwise.

For each user, items already in the user's history are never recommended. Model rows
are the items with a positive model score, best first; a list that comes up short
(or the whole list, for a user with fewer than `min_history` items) is topped up by
decayed popularity, and each row says which produced it (`source`). A user is given
fewer than K rows only when fewer than K items remain unseen.

Each row also says why (computed in the same batches, `explain=True`): `because_items`,
the user's own items that contributed most to a model row (the model's `explain`, in its
own terms), and `reason`, the same in plain words; a popularity row's reason is the
decayed popularity. `score_pct` puts the row on one scale across models and dates: the
share of the user's candidate (unseen) items ranked at or below it in the user's full
ranking, (candidates - rank + 1) / candidates; 1 is the best item for that user.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models.base import Input
from decayrec.models.device import csr_row_indices, user_rows
from decayrec.progress import Progress

if TYPE_CHECKING:
    from decayrec.config import DecayConfig, DecayrecConfig

SOURCE_MODEL = "model"
SOURCE_FALLBACK = "fallback"
BECAUSE_TOP = 3  # the user's items a reason names at most
# reason codes before the model's own phrases (Lists.reasons)
REASON_FALLBACK, REASON_MODEL = 0, 1
POPULARITY_REASON = "popular lately across all users (decayed popularity)"


def popularity_reason(decay: DecayConfig) -> str:
    """The plain-words reason of a popularity row, for the configured decay."""
    if decay.kernel == "exponential":
        return (
            f"popular lately across all users (decayed popularity: an interaction counts "
            f"half as much every {decay.half_life_days:g} days)"
        )
    if decay.kernel == "none":
        return "popular across all users (every interaction counts the same)"
    return f"{POPULARITY_REASON[:-1]}, {decay.kernel.replace('_', ' ')} kernel)"


log = logging.getLogger(__name__)
# runs scoring at least this many users log their progress (and show a bar on a terminal)
PROGRESS_USERS = 200_000


class Scorer(Protocol):
    """A model, or a wrapper of one, as `recommend` scores with it: its declared `input`
    says whether it reads the batch's rows, `score(x)` (CSR or dense), or the users'
    events, `score_users(matrix, users)`. Every model (and wrapper) also says why,
    `explain(x, items, top) -> Explanation` in the phrases of its `reasons`
    (decayrec.models.base); a scorer without `explain` gets the generic model reason."""

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
    user_pos: np.ndarray | None = None  # position of each entry's user in the scored order
    score_pct: np.ndarray | None = None  # float64: (candidates - rank + 1) / candidates
    because: np.ndarray | None = None  # (rows x BECAUSE_TOP) item_idx, -1 padded
    reason_code: np.ndarray | None = None  # int: index into `reasons`
    # phrases of the reason codes: fallback, model without items, the model's own
    reasons: tuple[str, ...] = (POPULARITY_REASON, "picked by the model from your history")
    explain_seconds: float = 0.0  # wall time spent explaining (in the scoring batches)
    explain_cpu_seconds: float = 0.0  # the same in CPU time of this process

    def to_arrow(self, matrix: InteractionMatrix) -> pa.Table:
        n = len(self.rank)
        columns = {
            "user_id": pa.array(matrix.user_ids[self.user_idx], pa.string()),
            "rank": pa.array(self.rank, pa.int32()),
            "item_id": pa.array(matrix.item_ids[self.item_idx], pa.string()),
            "score": pa.array(self.score, pa.float64()),
            "source": pa.array(
                np.where(self.from_model, SOURCE_MODEL, SOURCE_FALLBACK), pa.string()
            ),
        }
        because = self.because if self.because is not None else np.full((n, 0), -1)
        code = (
            self.reason_code
            if self.reason_code is not None
            else np.where(self.from_model, REASON_MODEL, REASON_FALLBACK)
        )
        columns["reason"], columns["because_items"] = reason_columns(
            because, code, self.reasons, matrix.item_ids
        )
        pct = self.score_pct if self.score_pct is not None else np.full(n, np.nan)
        columns["score_pct"] = pa.array(pct, pa.float64(), from_pandas=True)
        return pa.table(columns)

    def as_matrix(self, n_users: int, k: int) -> np.ndarray:
        """Item indices as an (n_users x k) array padded with -1, row = position in users."""
        out = np.full((n_users, k), -1, dtype=np.int64)
        keep = self.rank <= k
        out[self.user_pos[keep], self.rank[keep] - 1] = self.item_idx[keep]
        return out


def reason_columns(
    because: np.ndarray, code: np.ndarray, reasons: tuple[str, ...], item_ids: np.ndarray
) -> tuple[pa.Array, pa.Array]:
    """`reason` (text) and `because_items` (list of item ids, best first) of each row:
    the phrase of its code with `{items}` replaced by "item(s) a, b, c". A row whose
    code has items in its phrase but that has none takes the REASON_MODEL phrase.
    Built column-wise with Arrow compute (no loop over rows)."""
    valid = because >= 0
    counts = valid.sum(1)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    ids = pa.array(item_ids[because[valid]] if valid.any() else [], pa.string())
    because_items = pa.ListArray.from_arrays(pa.array(offsets), ids)
    has_items = np.array(["{items}" in r for r in reasons])
    code = np.where(has_items[code] & (counts == 0), REASON_MODEL, code)
    before = np.array([r.partition("{items}")[0] for r in reasons], dtype=object)
    after = np.array([r.partition("{items}")[2] for r in reasons], dtype=object)
    noun = np.where(has_items[code], np.where(counts == 1, "item ", "items "), "")
    joined = pc.if_else(pa.array(has_items[code]), pc.binary_join(because_items, ", "), "")
    reason = pc.binary_join_element_wise(
        pa.array(before[code], pa.string()),
        pa.array(noun, pa.string()),
        joined,
        pa.array(after[code], pa.string()),
        "",
    )
    return reason, because_items


def configured_lists(
    config: DecayrecConfig,
    model: Scorer | None,
    matrix: InteractionMatrix,
    device: torch.device | str,
    k: int | None = None,
    users: np.ndarray | None = None,
    explain: bool = True,
) -> Lists:
    """`recommend` with the configured list length (unless `k`), fallback threshold,
    batch size, memory budget and popularity reason; `explain=False` skips the reasons
    (backtests, which only rank)."""
    return recommend(
        model,
        matrix,
        k or config.k,
        users=users,
        min_history=config.model.min_history,
        user_batch=config.model.user_batch,
        device=device,
        memory_mb=config.model.score_memory_mb,
        explain=explain,
        fallback_reason=popularity_reason(config.decay),
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
    explain: bool = True,
    fallback_reason: str = POPULARITY_REASON,
) -> Lists:
    """Top-k unseen items for `users` (default: every user of the matrix), in batches of
    at most `user_batch` users and about `memory_mb` of dense (batch x items) tensors,
    with each row's score_pct and (with `explain`) its reason.

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
    explain = explain and hasattr(model, "explain")
    reasons = (fallback_reason, Lists.reasons[REASON_MODEL], *(model.reasons if explain else ()))
    explain_seconds = explain_cpu_seconds = 0.0
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
        candidates_np = n_items - history[start : start + len(batch), None]
        code = np.where(from_model.cpu().numpy(), REASON_MODEL, REASON_FALLBACK)
        because = np.full((*valid_np.shape, BECAUSE_TOP), -1, dtype=np.int64)
        if explain:
            started, started_cpu = time.perf_counter(), time.process_time()
            why = model.explain(x, torch.where(valid & from_model, top_item, -1), BECAUSE_TOP)
            because = why.items.cpu().numpy()
            kind = 0 if why.kind is None else why.kind.cpu().numpy()
            code = np.where(code == REASON_MODEL, 2 + kind, code)
            explain_seconds += time.perf_counter() - started
            explain_cpu_seconds += time.process_time() - started_cpu
        parts.append(
            (
                np.broadcast_to(batch[:, None], valid_np.shape)[valid_np],
                np.broadcast_to(pos[:, None], valid_np.shape)[valid_np],
                ranks[valid_np],
                top_item.cpu().numpy()[valid_np],
                score.cpu().numpy().astype(np.float64)[valid_np],
                from_model.cpu().numpy()[valid_np],
                ((candidates_np - ranks + 1) / np.maximum(candidates_np, 1))[valid_np],
                because[valid_np],
                code[valid_np],
            )
        )
        if progress is not None:
            progress.update(len(batch))
    if progress is not None:
        progress.close()
    if not parts:  # no users: empty columns
        empty = np.zeros(0, dtype=np.int64)
        none = np.zeros(0)
        no_items = np.zeros((0, BECAUSE_TOP), dtype=np.int64)
        parts.append((empty, empty, empty, empty, none, none > 0, none, no_items, empty))
    user_idx, user_pos, rank, item_idx, score, from_model, pct, because, code = (
        np.concatenate(p) for p in zip(*parts, strict=True)
    )
    return Lists(
        user_idx=user_idx,
        rank=rank,
        item_idx=item_idx,
        score=score,
        from_model=from_model,
        user_pos=user_pos,
        score_pct=pct,
        because=because,
        reason_code=code,
        reasons=reasons,
        explain_seconds=explain_seconds,
        explain_cpu_seconds=explain_cpu_seconds,
    )
