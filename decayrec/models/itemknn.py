"""Item-item neighbourhood model on the decayed affinities.

With X~ the rescaled decay-weighted matrix (users x items, mean non-zero weight 1) and
C = X~^T X~ its item co-occurrence (C_ii = sum_u w~_ui^2), the similarity of items i, j:

    cosine   S_ij = C_ij / sqrt(C_ii C_jj)
    jaccard  S_ij = C_ij / (C_ii + C_jj - C_ij)      (Tanimoto: Jaccard on weights)
    lift     S_ij = C_ij / (C_ii C_jj)               (as in SAR)

For each target item j only its `neighbours` most similar items i != j are kept (S is
sparse: at most neighbours * items entries). A user's score of j is

    s_uj = sum_{i in N(j)} w~_ui S_ij

and `explain(x_u, j)` returns the terms w~_ui S_ij, largest first: "because you
interacted with i". C is computed `item_batch` target columns at a time (memory
items x item_batch), with the sparse user-item matrix on whatever device is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from decayrec.features import InteractionMatrix
from decayrec.models.base import positive_mean

Similarity = Literal["cosine", "jaccard", "lift"]


class ItemKNN:
    name = "itemknn"

    def __init__(
        self,
        similarity: Similarity = "cosine",
        neighbours: int = 100,
        item_batch: int = 1024,
        device: torch.device | str = "cpu",
    ) -> None:
        if similarity not in ("cosine", "jaccard", "lift"):
            raise ValueError(f"unknown similarity {similarity!r}")
        self.similarity = similarity
        self.neighbours = neighbours
        self.item_batch = item_batch
        self.device = torch.device(device)
        self.scale = 1.0
        self.S: torch.Tensor | None = None  # sparse COO (items x items): S[i, j]
        self.item_ids: np.ndarray | None = None

    def fit(self, matrix: InteractionMatrix) -> ItemKNN:
        n_users, n_items = matrix.shape
        self.scale = positive_mean(matrix.weights)
        dev = self.device
        values = torch.from_numpy(matrix.weights / self.scale).to(torch.float32)
        index = torch.from_numpy(np.stack([matrix.rows, matrix.cols]))
        x = torch.sparse_coo_tensor(index, values, (n_users, n_items)).coalesce().to(dev)
        xt = x.t().coalesce().to_sparse_csr()  # items x users
        diag = torch.zeros(n_items, device=dev).index_add_(
            0, x.indices()[1], x.values() * x.values()
        )
        keep = min(self.neighbours, max(n_items - 1, 0))
        src, dst, sim = [], [], []
        for start in range(0, n_items, self.item_batch):
            stop = min(start + self.item_batch, n_items)
            targets = torch.arange(start, stop, device=dev)
            # C[:, block] = X^T X[:, block], dense items x block
            block = x.index_select(1, targets).to_dense()
            co = xt @ block
            co[targets, torch.arange(stop - start, device=dev)] = 0.0  # no self-similarity
            d_i, d_j = diag[:, None], diag[start:stop][None, :]
            if self.similarity == "cosine":
                s = co / (d_i * d_j).sqrt().clamp_min(1e-12)
            elif self.similarity == "jaccard":
                s = co / (d_i + d_j - co).clamp_min(1e-12)
            else:
                s = co / (d_i * d_j).clamp_min(1e-12)
            if keep == 0:
                continue
            top, idx = torch.topk(s, keep, dim=0)  # best neighbours of each target column
            mask = top > 0
            src.append(idx[mask])
            dst.append(targets[None, :].expand_as(idx)[mask])
            sim.append(top[mask])
        if src:
            ij = torch.stack([torch.cat(src), torch.cat(dst)])
            vals = torch.cat(sim)
        else:
            ij = torch.zeros(2, 0, dtype=torch.long, device=dev)
            vals = torch.zeros(0, device=dev)
        self.S = torch.sparse_coo_tensor(ij, vals, (n_items, n_items)).coalesce()
        self.item_ids = matrix.item_ids
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of a dense batch of (unscaled) user rows: (x / scale) S."""
        if self.S is None:
            raise RuntimeError("ItemKNN.score before fit")
        s = self.S.to(x.device)
        return torch.sparse.mm(s.t(), (x / self.scale).T.contiguous()).T

    def explain(self, user_row: torch.Tensor, item: int, top: int = 3) -> list[tuple[str, float]]:
        """The items of `user_row` (a dense row of weights) that contribute most to the
        score of `item` (an item index): [(item_id, contribution)], largest first."""
        if self.S is None:
            raise RuntimeError("ItemKNN.explain before fit")
        s = self.S.to(user_row.device)
        column = torch.zeros(s.shape[0], device=user_row.device)
        hits = s.indices()[1] == item
        column[s.indices()[0][hits]] = s.values()[hits]
        terms = (user_row.flatten().to(torch.float32) / self.scale) * column
        order = torch.argsort(terms, descending=True, stable=True)
        return [
            (str(self.item_ids[i]), float(terms[i])) for i in order[:top].tolist() if terms[i] > 0
        ]

    def save(self, path: str | Path) -> None:
        s = self.S.cpu()
        torch.save(
            {
                "similarity": self.similarity,
                "neighbours": self.neighbours,
                "scale": self.scale,
                "indices": s.indices(),
                "values": s.values(),
                "shape": tuple(s.shape),
                "item_ids": list(self.item_ids),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> ItemKNN:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = cls(state["similarity"], state["neighbours"], device=device)
        model.scale = state["scale"]
        model.S = (
            torch.sparse_coo_tensor(state["indices"], state["values"], state["shape"])
            .coalesce()
            .to(device)
        )
        model.item_ids = np.asarray(state["item_ids"], dtype=object)
        return model
