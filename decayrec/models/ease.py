"""EASE: Embarrassingly Shallow Autoencoders for sparse data (Steck, WWW 2019).

An item-item linear model fitted in closed form on the decay-weighted matrix X
(users x items):

    B = argmin_B ||X - X B||_F^2 + lambda ||B||_F^2   subject to diag(B) = 0

    G = X^T X + lambda I,   P = G^-1,   B_ij = -P_ij / P_jj  (i != j),   B_jj = 0

A user's scores are s_u = x_u B. X is rescaled so that its mean non-zero weight is 1:
the decay kernel's absolute scale (2^-age/half-life can be tiny) then never changes
what lambda means, and lambda is measured in "typical interactions".

G is accumulated over user batches, densely or pair by pair, whichever is cheaper
(memory n_items^2 + a bounded batch); the inverse is a Cholesky solve. Runs on
whatever device it is given (CUDA or CPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from decayrec.device import dense_rows
from decayrec.features import InteractionMatrix


class CatalogueTooLarge(ValueError):
    """EASE's memory grows with the square of the catalogue."""


# A scattered pair costs about as much as this many multiply-adds of a dense product
# (measured on MovieLens-small, 2 CPU cores: 1.1e-7 s per pair, 3e-11 s per multiply-add).
SCATTER_COST = 2048
PAIR_BATCH = 1 << 24  # (item, item) pairs scattered at a time: ~0.5 GB of temporaries
SPARSE_ROWS = 0.05  # score batches sparser than this share of non-zeros as CSR


def gram_matrix(
    matrix: InteractionMatrix, values: np.ndarray, user_batch: int, device: torch.device
) -> torch.Tensor:
    """G = X^T X (items x items, float32) for X = the matrix with `values`.

    Two ways, whichever costs less: dense products of user batches (n_users * n_items^2
    multiply-adds: fast BLAS, best for small catalogues), or scattering each user's
    (item, item) pairs into G (sum_u n_u^2 pairs: best for large, sparse catalogues,
    where the dense way would be hours).
    """
    n_users, n_items = matrix.shape
    ptr = matrix.row_pointer()
    per_user = np.diff(ptr)
    pairs = int((per_user.astype(np.int64) ** 2).sum())
    gram = torch.zeros(n_items, n_items, dtype=torch.float32, device=device)
    if SCATTER_COST * pairs >= n_users * n_items**2:
        for start in range(0, n_users, user_batch):
            stop = min(start + user_batch, n_users)
            x, _, _ = dense_rows(matrix, ptr, np.arange(start, stop), values, device)
            gram.addmm_(x.T, x)
        return gram
    flat = gram.view(-1)
    cols = torch.from_numpy(matrix.cols).to(device)
    vals = torch.from_numpy(values.astype(np.float32)).to(device)
    user = 0
    while user < n_users:
        # users whose pairs fit in one batch (at least one user)
        cum = np.cumsum(per_user[user:].astype(np.int64) ** 2)
        stop = user + max(1, int(np.searchsorted(cum, PAIR_BATCH, side="right")))
        lengths = per_user[user:stop]
        entries = np.arange(ptr[user], ptr[stop])
        # pair (e1, e2) for every two entries e1, e2 of the same user
        repeats = np.repeat(lengths, lengths)
        first = np.repeat(entries, repeats)
        row_start = np.repeat(ptr[user:stop], lengths)
        within = np.arange(len(first)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
        second = np.repeat(row_start, repeats) + within
        e1, e2 = torch.from_numpy(first).to(device), torch.from_numpy(second).to(device)
        flat.index_add_(0, cols[e1] * n_items + cols[e2], vals[e1] * vals[e2])
        user = stop
    return gram


class EASE:
    name = "ease"

    def __init__(
        self,
        l2: float = 100.0,
        max_items: int = 40_000,
        user_batch: int = 2048,
        device: torch.device | str = "cpu",
    ) -> None:
        self.l2 = l2
        self.max_items = max_items
        self.user_batch = user_batch
        self.device = torch.device(device)
        self.B: torch.Tensor | None = None
        self.scale = 1.0
        self.item_ids: np.ndarray | None = None

    def fit(self, matrix: InteractionMatrix) -> EASE:
        n_users, n_items = matrix.shape
        if n_items > self.max_items:
            gib = n_items**2 * 4 * 3 / 2**30
            raise CatalogueTooLarge(
                f"EASE on {n_items} items needs about {gib:.1f} GiB; model.max_items is "
                f"{self.max_items}. Raise it if the memory is there, or choose another model."
            )
        positive = matrix.weights[matrix.weights > 0]
        self.scale = float(positive.mean()) if len(positive) else 1.0
        values = matrix.weights / self.scale
        gram = gram_matrix(matrix, values, self.user_batch, self.device)
        gram.diagonal().add_(self.l2)
        chol = torch.linalg.cholesky(gram)
        del gram
        precision = torch.cholesky_inverse(chol)
        del chol
        B = precision / (-precision.diagonal())
        B.diagonal().zero_()
        self.B = B
        self.item_ids = matrix.item_ids
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of a dense batch of (unscaled) user rows: (batch x items)."""
        if self.B is None:
            raise RuntimeError("EASE.score before fit")
        x = x / self.scale
        if x.device.type == "cpu" and x.numel() and (x != 0).float().mean() < SPARSE_ROWS:
            # user rows are mostly zeros: a CSR product skips them (2048 x 20k rows:
            # 1.3 s instead of 35 s for the dense product, measured at 10^7 events)
            return x.to_sparse_csr() @ self.B
        return x @ self.B

    def save(self, path: str | Path) -> None:
        torch.save(
            {
                "B": self.B.cpu(),
                "scale": self.scale,
                "l2": self.l2,
                "item_ids": list(self.item_ids),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> EASE:
        state = torch.load(path, map_location=device, weights_only=False)
        model = cls(l2=state["l2"], device=device)
        model.B = state["B"].to(device)
        model.scale = state["scale"]
        model.item_ids = np.asarray(state["item_ids"], dtype=object)
        return model
