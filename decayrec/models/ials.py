"""Weighted implicit ALS (Hu, Koren & Volinsky, ICDM 2008) on decayed confidences.

With w~ = w / mean(w > 0) the rescaled decayed weight of (u, i) (rescaled like EASE, so
that alpha never depends on the decay kernel's absolute scale):

    p_ui = 1[w~_ui > 0]            preference
    c_ui = 1 + alpha * w~_ui       confidence (1 for every pair not in the matrix)

    min_{X, Y}  sum_{u, i} c_ui (p_ui - x_u . y_i)^2 + reg (sum_u |x_u|^2 + sum_i |y_i|^2)

Alternating exact minimisation: with Y fixed each user's factors solve

    (Y^T Y + Y^T (C_u - I) Y + reg I) x_u = Y^T C_u p_u

and symmetrically for items. The systems are solved by batched conjugate gradient
(Takacs, Pilaszy & Tikk, RecSys 2011), warm-started from the previous sweep with
`cg_steps` steps; the product with the left-hand side costs O(nnz * factors) through
the sparse entries only (Y^T Y is shared), so memory is factors * (users + items) plus
`entry_batch` * factors for the sparse part (or a dense block of at most `dense_block`
row x item products where that is faster: small catalogues).

`score(x)` folds the given rows in: it solves the user system above for them against
the fixed item factors (`fold_in_steps` CG steps from zero), then scores x_u . y_i.
Users with new events therefore get fresh factors without retraining the items, and
scoring never depends on which users were in the training matrix. `explain` names the
user's items closest to a recommended item in factor space (cosine of y_i, y_j). Runs on any device
(float32 throughout: the normal equations are not safe in TF32/bf16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models.base import Explanation, Input, Model, closest_in_embedding, positive_mean
from decayrec.models.device import csr_row_indices
from decayrec.models.files import saved_item_ids, saved_number, saved_tensor


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """`steps` CG iterations on every row's system A_r x_r = b_r at once (A_r s.p.d.)."""
    r = b - matvec(x)
    p = r.clone()
    rs = (r * r).sum(1)
    for _ in range(steps):
        ap = matvec(p)
        step = rs / (p * ap).sum(1).clamp_min(1e-20)
        x = x + step[:, None] * p
        r = r - step[:, None] * ap
        rs_new = (r * r).sum(1)
        p = r + (rs_new / rs.clamp_min(1e-20))[:, None] * p
        rs = rs_new
    return x


def _row_chunks(ptr: np.ndarray, entry_batch: int) -> list[tuple[int, int, int, int]]:
    """Consecutive row ranges (r0, r1) with their entry ranges (e0, e1), each holding at
    most `entry_batch` entries (or a single row)."""
    chunks, r0, n_rows = [], 0, len(ptr) - 1
    while r0 < n_rows:
        r1 = int(np.searchsorted(ptr, ptr[r0] + entry_batch, side="right")) - 1
        r1 = min(max(r1, r0 + 1), n_rows)
        chunks.append((r0, r1, int(ptr[r0]), int(ptr[r1])))
        r0 = r1
    return chunks


_INT_PARAMS = {"factors", "iterations", "cg_steps", "fold_in_steps", "seed"}
_PARAMS = _INT_PARAMS | {"alpha", "reg"}


class IALS(Model):
    name = "ials"
    input = Input.CSR  # fold-in reads only the rows' entries
    reasons = ("close in taste to {items}, which you interacted with",)

    def __init__(
        self,
        factors: int = 64,
        alpha: float = 10.0,
        reg: float = 1.0,
        iterations: int = 15,
        cg_steps: int = 3,
        fold_in_steps: int = 0,
        seed: int = 0,
        entry_batch: int = 4_000_000,
        dense_block: int = 16_000_000,
        device: torch.device | str = "cpu",
    ) -> None:
        self.factors = factors
        self.alpha = alpha
        self.reg = reg
        self.iterations = iterations
        self.cg_steps = cg_steps
        # CG reaches the exact solution in at most `factors` steps
        self.fold_in_steps = fold_in_steps or min(factors, 3 * cg_steps + 10)
        self.seed = seed
        self.entry_batch = entry_batch
        self.dense_block = dense_block
        self.device = torch.device(device)
        self.scale = 1.0
        self.user_factors: torch.Tensor | None = None
        self.item_factors: torch.Tensor | None = None
        self.item_ids: np.ndarray | None = None

    # -- the normal equations -------------------------------------------------------
    def _system(
        self,
        other: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        weights: torch.Tensor,
        n_rows: int,
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        """matvec and right-hand side of the systems of `n_rows` rows whose entries are
        (rows, cols, rescaled weights), rows sorted, against the fixed factors `other`."""
        gram = other.T @ other
        gram.diagonal().add_(self.reg)
        extra = self.alpha * weights  # c - 1
        target = torch.where(weights > 0, 1.0 + extra, torch.zeros_like(extra))  # c * p
        ptr = torch.searchsorted(rows, torch.arange(n_rows + 1, device=rows.device))
        chunks = _row_chunks(ptr.cpu().numpy(), self.entry_batch)
        n_other = other.shape[0]

        def times_other(r0: int, r1: int, values: torch.Tensor) -> torch.Tensor:
            e0 = ptr[r0]
            local = torch.sparse_csr_tensor(
                ptr[r0 : r1 + 1] - e0, cols[e0 : ptr[r1]], values, (r1 - r0, n_other)
            )
            return local @ other

        def matvec(v: torch.Tensor) -> torch.Tensor:
            out = v @ gram
            for r0, r1, e0, e1 in chunks:
                if (r1 - r0) * n_other <= self.dense_block:
                    # one GEMM and a gather beat two gathers of nnz x factors
                    dot = (v[r0:r1] @ other.T)[rows[e0:e1] - r0, cols[e0:e1]]
                else:
                    # x_r . y_c for just the entries: a sampled dense-dense product
                    # (~25x faster than gathering nnz x factors rows, measured at 10^7)
                    pattern = torch.sparse_csr_tensor(
                        ptr[r0 : r1 + 1] - ptr[r0],
                        cols[e0:e1],
                        torch.zeros(e1 - e0, dtype=v.dtype, device=v.device),
                        (r1 - r0, n_other),
                    )
                    dot = torch.sparse.sampled_addmm(pattern, v[r0:r1], other.T, beta=0.0)
                    dot = dot.values()
                out[r0:r1] += times_other(r0, r1, dot * extra[e0:e1])
            return out

        b = torch.zeros(n_rows, other.shape[1], dtype=other.dtype, device=other.device)
        for r0, r1, e0, e1 in chunks:
            b[r0:r1] = times_other(r0, r1, target[e0:e1])
        return matvec, b

    def fit(self, matrix: InteractionMatrix) -> IALS:
        n_users, n_items = matrix.shape
        self.scale = positive_mean(matrix.weights)
        dev = self.device
        w = torch.from_numpy(matrix.weights / self.scale).to(torch.float32)
        by_user = (torch.from_numpy(matrix.rows), torch.from_numpy(matrix.cols), w)
        order = torch.from_numpy(np.lexsort((matrix.rows, matrix.cols)))
        by_item = (by_user[1][order], by_user[0][order], w[order])
        by_user = tuple(t.to(dev) for t in by_user)
        by_item = tuple(t.to(dev) for t in by_item)
        gen = torch.Generator().manual_seed(self.seed)
        init = 0.01 / self.factors**0.5
        users = (torch.randn(n_users, self.factors, generator=gen) * init).to(dev)
        items = (torch.randn(n_items, self.factors, generator=gen) * init).to(dev)
        for _ in range(self.iterations):
            matvec, b = self._system(items, *by_user, n_users)
            users = conjugate_gradient(matvec, b, users, self.cg_steps)
            matvec, b = self._system(users, *by_item, n_items)
            items = conjugate_gradient(matvec, b, items, self.cg_steps)
        self.user_factors, self.item_factors = users, items
        self.item_ids = matrix.item_ids
        return self

    def fold_in(self, x: torch.Tensor) -> torch.Tensor:
        """User factors of a batch of (unscaled) rows, dense or CSR, item factors fixed."""
        if self.item_factors is None:
            raise RuntimeError("IALS.score before fit")
        items = self.item_factors.to(x.device)
        if x.layout == torch.sparse_csr:
            rows = csr_row_indices(x)
            cols, w = x.col_indices(), (x.values() / self.scale).to(torch.float32)
        else:
            rows, cols = torch.nonzero(x, as_tuple=True)
            w = (x[rows, cols] / self.scale).to(torch.float32)
        matvec, b = self._system(items, rows, cols, w, x.shape[0])
        start = torch.zeros_like(b)
        return conjugate_gradient(matvec, b, start, self.fold_in_steps)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of a batch of user rows (dense or CSR): fold-in, then x_u . y_i."""
        return self.fold_in(x) @ self.item_factors.to(x.device).T

    def explain(self, x: torch.Tensor, items: torch.Tensor, top: int = 3) -> Explanation:
        """The user's items whose factors are closest (cosine) to the recommended item's."""
        if self.item_factors is None:
            raise RuntimeError("IALS.explain before fit")
        return closest_in_embedding(x, items, self.item_factors, top)

    def state(self) -> dict[str, Any]:
        return {
            "params": {
                "factors": self.factors,
                "alpha": self.alpha,
                "reg": self.reg,
                "iterations": self.iterations,
                "cg_steps": self.cg_steps,
                "fold_in_steps": self.fold_in_steps,
                "seed": self.seed,
            },
            "scale": self.scale,
            "user_factors": self.user_factors.cpu(),
            "item_factors": self.item_factors.cpu(),
            "item_ids": [str(item) for item in self.item_ids],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str) -> IALS:
        params = state["params"]
        if not isinstance(params, dict) or set(params) != _PARAMS:
            raise ValueError(f"params are not the settings {sorted(_PARAMS)}")
        params = {key: saved_number(params, key) for key in sorted(_PARAMS)}
        if not all(isinstance(params[key], int) for key in _INT_PARAMS):
            raise ValueError(f"params {sorted(_INT_PARAMS)} are not all integers")
        item_ids = saved_item_ids(state)
        users = saved_tensor(state, "user_factors", 2)
        items = saved_tensor(state, "item_factors", 2)
        factors = params["factors"]
        if tuple(items.shape) != (len(item_ids), factors) or users.shape[1] != factors:
            raise ValueError(
                f"factors {tuple(users.shape)} and {tuple(items.shape)} do not fit "
                f"{len(item_ids)} items x {factors} factors"
            )
        model = cls(**params, device=device)
        model.scale = saved_number(state, "scale")
        model.user_factors = users.to(device)
        model.item_factors = items.to(device)
        model.item_ids = item_ids
        return model
