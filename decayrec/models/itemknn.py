"""Item-item neighbourhood model on the decayed affinities.

With X~ the rescaled decay-weighted matrix (users x items, mean non-zero weight 1) and
C = A^T A the item co-occurrence of A = X~ (`cooccurrence="decayed"`) or of A = the
0/1 matrix of who touched what (`"counts"`, as SAR: similarity from the whole history,
the decay only in the user's side), the similarity of items i, j:

    cosine   S_ij = C_ij / sqrt(C_ii C_jj)
    jaccard  S_ij = C_ij / (C_ii + C_jj - C_ij)      (Tanimoto: Jaccard on weights)
    lift     S_ij = C_ij / (C_ii C_jj)               (as in SAR)

For each target item j only its `neighbours` most similar items i != j are kept (S is
sparse: at most neighbours * items entries). A user's score of j is

    s_uj = sum_{i in N(j)} w~_ui S_ij

a sparse row times a sparse matrix: about (items of the user) x neighbours
multiply-adds, whatever the catalogue size. `explain(x, items)` returns the items i of
the largest terms w~_ui S_ij, largest first: "because you interacted with i".

C is built by `decayrec.models.cooccurrence.gram_matrix`, whole when it fits in
`memory_mb`, else one block of target rows at a time, on whatever device is given.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import scipy.sparse
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models.base import (
    EXPLAIN_CHUNK_TERMS,
    Explanation,
    Input,
    Model,
    history_entries,
    positive_mean,
)
from decayrec.models.cooccurrence import gram_matrix, sum_dtype
from decayrec.models.files import saved_item_ids, saved_number, saved_tensor

Similarity = Literal["cosine", "jaccard", "lift"]
EXPLAIN_DENSE_VALUES = 1 << 22  # explain's dense (users x items) block: 16 MB of float32
Cooccurrence = Literal["decayed", "counts"]


class ItemKNN(Model):
    name = "itemknn"
    input = Input.CSR  # CSR rows times the sparse similarity: no dense user rows needed
    reasons = ("often chosen with {items}, which you interacted with",)
    settings = {"memory_mb": "score_memory_mb"}

    def __init__(
        self,
        similarity: Similarity = "jaccard",
        neighbours: int = 100,
        cooccurrence: Cooccurrence = "decayed",
        memory_mb: float = 2048.0,
        user_batch: int = 2048,
        device: torch.device | str = "cpu",
        pair_half_life_days: float = 0.0,
    ) -> None:
        if similarity not in ("cosine", "jaccard", "lift"):
            raise ValueError(f"unknown similarity {similarity!r}")
        if cooccurrence not in ("decayed", "counts"):
            raise ValueError(f"unknown cooccurrence {cooccurrence!r}")
        self.similarity = similarity
        self.pair_half_life_days = pair_half_life_days
        self.neighbours = neighbours
        self.cooccurrence = cooccurrence
        self.memory_mb = memory_mb
        self.user_batch = user_batch
        self.device = torch.device(device)
        self.scale = 1.0
        self.S: torch.Tensor | None = None  # sparse COO (items x items): S[i, j]
        self._S_csr: torch.Tensor | None = None  # the same as CSR, for scoring
        self._S_scipy: scipy.sparse.csr_matrix | None = None  # the same for scipy (CPU)
        self.item_ids: np.ndarray | None = None

    def fit(self, matrix: InteractionMatrix) -> ItemKNN:
        n_items = matrix.shape[1]
        scale = positive_mean(matrix.weights)
        if self.summable(n_items):  # C whole (its pairs generated once)
            return self.fit_sums(self.user_sums(matrix, scale), scale, matrix.item_ids)
        # else one block of target rows at a time; C is symmetric, so the rows of a block of
        # targets are also their columns
        self.scale = scale
        values = self._values(matrix, scale)
        diag = self._diagonal(matrix, values)
        width = max(1, min(n_items, int(self.memory_mb * 2**20 // (8 * max(n_items, 1)))))

        def block(start: int, stop: int) -> torch.Tensor:
            return gram_matrix(
                matrix,
                values,
                self.user_batch,
                self.device,
                (start, stop),
                pair_half_life_days=self.pair_half_life_days,
            )

        self._select(block, diag, n_items, width)
        self.item_ids = matrix.item_ids
        return self

    def summable(self, n_items: int) -> bool:
        """C and its diagonal are sums over users when C fits in memory_mb whole (summed in
        float64 up to FLOAT64_SUMS_MAX_ITEMS items: 8 bytes an entry there)."""
        whole = sum_dtype(n_items).itemsize * n_items**2
        return whole + 4 * n_items * min(n_items, 256) <= self.memory_mb * 2**20

    def user_sums(self, matrix: InteractionMatrix, scale: float) -> dict[str, torch.Tensor]:
        """The map: {"gram": C, "diag": diag(C)} of the matrix's users, summed in float64
        up to FLOAT64_SUMS_MAX_ITEMS items (the same C in any order of users)."""
        values = self._values(matrix, scale)
        dtype = sum_dtype(matrix.shape[1])
        gram = gram_matrix(
            matrix,
            values,
            self.user_batch,
            self.device,
            pair_half_life_days=self.pair_half_life_days,
            dtype=dtype,
        )
        return {"gram": gram, "diag": self._diagonal(matrix, values, dtype)}

    def fit_sums(
        self, sums: dict[str, torch.Tensor], scale: float, item_ids: np.ndarray
    ) -> ItemKNN:
        """The reduce: each target's neighbours from C summed over every user."""
        n_items = len(item_ids)
        self.scale = scale
        gram = sums.pop("gram").to(self.device, torch.float32)
        width = int((self.memory_mb * 2**20 - 4 * n_items**2) // (4 * max(n_items, 1)))
        width = max(1, min(n_items, width))
        diag = sums["diag"].to(self.device, torch.float32)
        self._select(lambda start, stop: gram[start:stop], diag, n_items, width)
        self.item_ids = item_ids
        return self

    def _values(self, matrix: InteractionMatrix, scale: float) -> np.ndarray:
        if self.cooccurrence == "decayed":
            return matrix.weights / scale
        return np.ones(len(matrix.weights))

    def _diagonal(
        self, matrix: InteractionMatrix, values: np.ndarray, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        dev = self.device
        squares = torch.from_numpy((values * values).astype(np.float32)).to(dev, dtype)
        return torch.zeros(matrix.shape[1], dtype=dtype, device=dev).index_add_(
            0, torch.from_numpy(matrix.cols).to(dev), squares
        )

    def _select(
        self,
        block: Callable[[int, int], torch.Tensor],
        diag: torch.Tensor,
        n_items: int,
        width: int,
    ) -> None:
        """S from C, `width` target rows at a time (`block(start, stop)` = C[start:stop])."""
        dev = self.device
        keep = min(self.neighbours, max(n_items - 1, 0))
        src, dst, sim = [], [], []
        for start in range(0, n_items if keep else 0, width):
            stop = min(start + width, n_items)
            top, idx = self._neighbours(block(start, stop), diag, start, keep)
            mask = top > 0
            targets = torch.arange(start, stop, device=dev)
            src.append(idx[mask])
            dst.append(targets[:, None].expand_as(idx)[mask])
            sim.append(top[mask])
        if src:
            ij = torch.stack([torch.cat(src), torch.cat(dst)])
            vals = torch.cat(sim)
        else:
            ij = torch.zeros(2, 0, dtype=torch.long, device=dev)
            vals = torch.zeros(0, device=dev)
        self._set_similarity(torch.sparse_coo_tensor(ij, vals, (n_items, n_items)))

    def _neighbours(
        self, block: torch.Tensor, diag: torch.Tensor, start: int, keep: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The `keep` best neighbours of each target in `block` = C[start:stop, :] (rows =
        targets; overwritten with S): their similarities and item indices."""
        width = block.shape[0]
        targets = torch.arange(width, device=block.device)
        block[targets, start + targets] = 0.0  # no self-similarity
        # a few rows at a time: small temporaries are reused by the allocator, where one
        # (width x items) temporary per block costs its page faults every time
        for r0 in range(0, width, 256):
            rows = block[r0 : r0 + 256]
            d_j = diag[start + r0 : start + r0 + rows.shape[0], None]
            if self.similarity == "cosine":
                rows /= (diag[None, :] * d_j).sqrt_().clamp_min_(1e-12)
            elif self.similarity == "jaccard":
                rows /= (diag[None, :] + d_j - rows).clamp_min_(1e-12)
            else:
                rows /= (diag[None, :] * d_j).clamp_min_(1e-12)
        return torch.topk(block, keep, dim=1)

    def _set_similarity(self, s: torch.Tensor) -> None:
        self._neighbours_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.S = s.coalesce()
        self._S_csr = self.S.to_sparse_csr()
        self._S_scipy = _as_scipy(self._S_csr) if self._S_csr.device.type == "cpu" else None

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of a batch of (unscaled) user rows (batch x items): sparse CSR for CSR
        rows (items a user's neighbours never reach are absent, i.e. 0), dense for dense."""
        if self._S_csr is None:
            raise RuntimeError("ItemKNN.score before fit")
        rows = x if x.layout == torch.sparse_csr else x.to_sparse_csr()
        product = self._times_similarity(rows.to(torch.float32))
        if x.layout == torch.sparse_csr:
            return product
        return product.to_dense()

    def _times_similarity(self, rows: torch.Tensor) -> torch.Tensor:
        """(rows S) / scale as a CSR tensor on the rows' device."""
        if rows.device.type != "cpu":
            product = rows @ self._S_csr.to(rows.device)
            crow, col, value = product.crow_indices(), product.col_indices(), product.values()
        else:
            # torch's CPU CSR x CSR product leaks ~37 MB per call (torch 2.13: 22 GB over
            # the 900 batches of 10^8 events); scipy's is as fast and does not
            product = _parallel_product(_as_scipy(rows), self._S_scipy, torch.get_num_threads())
            crow = torch.from_numpy(product.indptr.astype(np.int64))
            col = torch.from_numpy(product.indices.astype(np.int64))
            value = torch.from_numpy(product.data.astype(np.float32, copy=False))
        shape = (rows.shape[0], self._S_csr.shape[1])
        return torch.sparse_csr_tensor(crow, col, value / self.scale, shape)

    def explain(self, x: torch.Tensor, items: torch.Tensor, top: int = 3) -> Explanation:
        """The largest terms w~_ui S_ij of each score s_uj: "because you interacted with
        i". Only the neighbours N(j) of a target can contribute, so each (user, target)
        looks up its <= `neighbours` neighbours in the user's row (a binary search in
        the batch's sorted (user, item) keys) rather than the whole history."""
        if self.S is None:
            raise RuntimeError("ItemKNN.explain before fit")
        neighbour, similarity = self._neighbour_lists(items.device)
        batch, k = items.shape
        n_items = self.S.shape[0]
        row, col, weight = history_entries(x)
        weight = weight / self.scale
        out_items = torch.full((batch, k, top), -1, dtype=torch.int64, device=items.device)
        out_weights = torch.zeros((batch, k, top), dtype=torch.float32, device=items.device)
        width = neighbour.shape[1]
        if len(col) == 0 or width == 0 or top == 0:
            return Explanation(out_items, out_weights)
        step = max(1, EXPLAIN_CHUNK_TERMS * 4 // max(k * width, 1))
        # a block's rows as a dense (users x items) table where that stays small (a
        # gather), else binary searches in the batch's sorted (user, item) keys
        dense = EXPLAIN_DENSE_VALUES // n_items >= 16
        if dense:
            step = min(step, EXPLAIN_DENSE_VALUES // n_items)
        else:
            keys, order = torch.sort(row * n_items + col)
            weight = weight[order]
        for start in range(0, batch, step):
            targets = items[start : start + step]
            n = len(targets)
            candidates = neighbour[targets.clamp_min(0)]  # n x k x width, -1 = none
            if dense:
                table = torch.zeros(n, n_items + 1, device=items.device)  # column -1: 0
                in_block = (row >= start) & (row < start + n)
                table[row[in_block] - start, col[in_block]] = weight[in_block]
                local = torch.arange(n, device=items.device)[:, None, None]
                w = table[local, candidates]
            else:
                query = (start + torch.arange(n, device=items.device))[:, None, None] * n_items
                query = query + candidates
                at = torch.searchsorted(keys, query).clamp_max(len(keys) - 1)
                w = torch.where((keys[at] == query) & (candidates >= 0), weight[at], 0.0)
            terms = similarity[targets.clamp_min(0)] * w * (targets >= 0)[:, :, None]
            best, where = torch.topk(terms, min(top, width), dim=2)
            keep = best > 0
            chosen = torch.gather(candidates, 2, where)
            out_items[start : start + n, :, : best.shape[2]] = torch.where(keep, chosen, -1)
            out_weights[start : start + n, :, : best.shape[2]] = torch.where(keep, best, 0.0)
        return Explanation(out_items, out_weights)

    def _neighbour_lists(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Each target j's neighbours i and similarities S_ij as (items x width) tensors
        padded with -1 / 0 (width: the most neighbours any target has); built once."""
        cached = self._neighbours_cache
        if cached is None or cached[0].device != device:
            n_items = self.S.shape[0]
            source, target = self.S.indices()
            values = self.S.values().to(torch.float32)
            order = torch.argsort(target * n_items + source)
            source, target, values = source[order], target[order], values[order]
            counts = torch.bincount(target, minlength=n_items)
            width = int(counts.max()) if len(counts) and len(target) else 0
            first = (torch.cumsum(counts, 0) - counts)[target]
            slot = torch.arange(len(target), device=target.device) - first
            neighbour = torch.full((n_items, width), -1, dtype=torch.int64, device=target.device)
            similarity = torch.zeros((n_items, width), dtype=torch.float32, device=target.device)
            neighbour[target, slot] = source
            similarity[target, slot] = values
            cached = (neighbour.to(device), similarity.to(device))
            self._neighbours_cache = cached
        return cached

    def state(self) -> dict[str, Any]:
        s = self.S.cpu()
        return {
            "similarity": self.similarity,
            "neighbours": self.neighbours,
            "cooccurrence": self.cooccurrence,
            "scale": self.scale,
            "indices": s.indices(),
            "values": s.values(),
            "shape": [int(n) for n in s.shape],
            "item_ids": [str(item) for item in self.item_ids],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str) -> ItemKNN:
        """The sparse similarity is rebuilt from its indices and values, index ranges
        checked."""
        item_ids = saved_item_ids(state)
        n_items = len(item_ids)
        shape = tuple(state["shape"])
        if shape != (n_items, n_items):
            raise ValueError(f"the similarity is {shape} for {n_items} items")
        indices = saved_tensor(state, "indices", 2)
        values = saved_tensor(state, "values", 1)
        if indices.dtype != torch.int64 or indices.shape[0] != 2:
            raise ValueError(f"indices are {indices.dtype} {tuple(indices.shape)}")
        if not values.is_floating_point() or indices.shape[1] != values.shape[0]:
            raise ValueError(f"{values.shape[0]} {values.dtype} values for the indices")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n_items):
            raise ValueError(f"similarity indices outside 0..{n_items - 1}")
        model = cls(
            state["similarity"],
            int(state["neighbours"]),
            state.get("cooccurrence", "decayed"),  # models saved before the option
            device=device,
        )
        model.scale = saved_number(state, "scale")
        similarity = torch.sparse_coo_tensor(indices, values, shape, check_invariants=True)
        model._set_similarity(similarity.to(device))
        model.item_ids = item_ids
        return model


def _as_scipy(csr: torch.Tensor) -> scipy.sparse.csr_matrix:
    """A CPU CSR tensor as a scipy CSR matrix over the same arrays (no copy)."""
    return scipy.sparse.csr_matrix(
        (csr.values().numpy(), csr.col_indices().numpy(), csr.crow_indices().numpy()),
        shape=tuple(csr.shape),
    )


def _parallel_product(
    left: scipy.sparse.csr_matrix, right: scipy.sparse.csr_matrix, threads: int
) -> scipy.sparse.csr_matrix:
    """left @ right with the rows of `left` split over `threads` threads (scipy releases
    the GIL in the product: 2 threads, 0.10 -> 0.06 s per 2,048 users at 10^7 events)."""
    n_rows = left.shape[0]
    threads = max(1, min(threads, n_rows // 256))
    if threads == 1:
        return left @ right
    bounds = np.linspace(0, n_rows, threads + 1).astype(int)
    slices = zip(bounds[:-1], bounds[1:], strict=True)
    parts = list(_product_pool(threads).map(lambda r: left[r[0] : r[1]] @ right, slices))
    return scipy.sparse.vstack(parts, format="csr")


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _product_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the process: the same threads batch after batch (new
    threads each batch would each take a malloc arena of their own)."""
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="itemknn")
    return _POOLS[threads]
