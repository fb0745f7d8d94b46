"""EASE: Embarrassingly Shallow Autoencoders for sparse data (Steck, WWW 2019).

An item-item linear model fitted in closed form on the decay-weighted matrix X
(users x items):

    B = argmin_B ||X - X B||_F^2 + lambda ||B||_F^2   subject to diag(B) = 0

    G = X^T X + lambda I,   P = G^-1,   B_ij = -P_ij / P_jj  (i != j),   B_jj = 0

With a pair half-life h, X^T X is replaced by its time-gap-decayed form
sum_u x_ui x_uj 2^(-|t_ui - t_uj| / h) (decayrec.models.cooccurrence): positive
semi-definite still (a Schur product of PSD matrices), so the same closed form holds.

A user's scores are s_u = x_u B; `explain` names the items i of the largest terms
x_ui B_ij of a score. X is rescaled so that its mean non-zero weight is 1:
the decay kernel's absolute scale (2^-age/half-life can be tiny) then never changes
what lambda means, and lambda is measured in "typical interactions".

G is accumulated over user batches, densely or pair by pair, whichever is cheaper
(memory n_items^2 + a bounded batch); the inverse is a Cholesky solve. Runs on
whatever device it is given (CUDA or CPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models.base import Explanation, Input, Model, positive_mean, top_contributions
from decayrec.models.cooccurrence import gram_matrix, sum_dtype
from decayrec.models.files import saved_item_ids, saved_number, saved_tensor


class CatalogueTooLarge(ValueError):
    """EASE's memory grows with the square of the catalogue."""


SPARSE_ROWS = 0.05  # score batches sparser than this share of non-zeros as CSR


class EASE(Model):
    name = "ease"
    input = Input.CSR
    reasons = ("because you interacted with {items}",)

    def __init__(
        self,
        l2: float = 100.0,
        max_items: int = 40_000,
        user_batch: int = 2048,
        device: torch.device | str = "cpu",
        pair_half_life_days: float = 0.0,
    ) -> None:
        self.l2 = l2
        self.pair_half_life_days = pair_half_life_days
        self.max_items = max_items
        self.user_batch = user_batch
        self.device = torch.device(device)
        self.B: torch.Tensor | None = None
        self.scale = 1.0
        self.item_ids: np.ndarray | None = None

    def fit(self, matrix: InteractionMatrix) -> EASE:
        scale = positive_mean(matrix.weights)
        return self.fit_sums(self.user_sums(matrix, scale), scale, matrix.item_ids)

    def summable(self, n_items: int) -> bool:
        """G is a sum over users: any catalogue EASE fits can be fitted by shards."""
        return True

    def user_sums(self, matrix: InteractionMatrix, scale: float) -> dict[str, torch.Tensor]:
        """The map: {"gram": X^T X} (or its gap-decayed form) of the matrix's users, summed
        in float64 up to FLOAT64_SUMS_MAX_ITEMS items (the same G in any order of users)."""
        self._check_catalogue(matrix.shape[1])
        gram = gram_matrix(
            matrix,
            matrix.weights / scale,
            self.user_batch,
            self.device,
            pair_half_life_days=self.pair_half_life_days,
            dtype=sum_dtype(matrix.shape[1]),
        )
        return {"gram": gram}

    def fit_sums(self, sums: dict[str, torch.Tensor], scale: float, item_ids: np.ndarray) -> EASE:
        """The reduce: B from G summed over every user (`sums["gram"]` is consumed)."""
        self._check_catalogue(len(item_ids))
        self.scale = scale
        gram = sums.pop("gram").to(self.device, torch.float32)
        gram.diagonal().add_(self.l2)
        chol = torch.linalg.cholesky(gram)
        del gram
        # P = G^-1 is symmetric (exactly so as computed), and LAPACK lays it out by
        # columns: its transpose is the same matrix laid out by rows, which is what scoring
        # reads (x_u B adds the rows of the user's items; column-major B made each row a
        # strided gather: 1.3 s instead of 0.25 s per 2,048 users at 20k items)
        precision = torch.cholesky_inverse(chol).T
        del chol
        B = precision / (-precision.diagonal())
        B.diagonal().zero_()
        self.B = B
        self.item_ids = item_ids
        return self

    def _check_catalogue(self, n_items: int) -> None:
        if n_items > self.max_items:
            gib = n_items**2 * 4 * 3 / 2**30
            raise CatalogueTooLarge(
                f"EASE on {n_items} items needs about {gib:.1f} GiB; model.max_items is "
                f"{self.max_items}. Raise it if the memory is there, or choose another model."
            )

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of a batch of (unscaled) user rows, dense or CSR: (batch x items)."""
        if self.B is None:
            raise RuntimeError("EASE.score before fit")
        if x.layout == torch.sparse_csr:
            if x.values().numel() < SPARSE_ROWS * x.shape[0] * x.shape[1]:
                # rows mostly zeros: the CSR product skips them (2048 users x 20k items:
                # 0.8 s instead of 35 s for the dense product, measured at 10^7 events)
                return (x.to(torch.float32) @ self.B) / self.scale
            x = x.to_dense()
        return (x / self.scale) @ self.B

    def explain(self, x: torch.Tensor, items: torch.Tensor, top: int = 3) -> Explanation:
        """The largest terms x_ui B_ij of each score s_uj = x_u B_j (x rescaled)."""
        if self.B is None:
            raise RuntimeError("EASE.explain before fit")
        B = self.B.to(items.device)
        return top_contributions(
            x,
            items,
            lambda history, targets, w: (
                (w / self.scale)[:, None, :] * B[history[:, None, :], targets[:, :, None]]
            ),
            top,
        )

    def state(self) -> dict[str, Any]:
        return {
            "B": self.B.cpu(),
            "scale": self.scale,
            "l2": self.l2,
            "item_ids": [str(item) for item in self.item_ids],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str) -> EASE:
        item_ids = saved_item_ids(state)
        B = saved_tensor(state, "B", 2)
        if tuple(B.shape) != (len(item_ids), len(item_ids)):
            raise ValueError(f"B is {tuple(B.shape)} for {len(item_ids)} items")
        model = cls(l2=saved_number(state, "l2"), device=device)
        model.B = B.to(device).contiguous()  # rows contiguous (files saved by columns too)
        model.scale = saved_number(state, "scale")
        model.item_ids = item_ids
        return model
