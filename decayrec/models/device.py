"""Torch device choice and the sparse-to-dense helper shared by models and scoring."""

from __future__ import annotations

import numpy as np
import torch

from decayrec.lake.features import InteractionMatrix


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("model.device is 'cuda' but torch.cuda.is_available() is False")
        return torch.device("cuda")
    return torch.device("cpu")


def entry_ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The indices of the ranges [starts[n], stops[n]) concatenated, without a Python loop."""
    lengths = np.maximum(stops - starts, 0)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return (offsets + np.arange(int(lengths.sum()))).astype(np.int64)


def batch_entries(
    matrix: InteractionMatrix,
    ptr: np.ndarray,
    users: np.ndarray,
    values: np.ndarray,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """The entries of `users`' rows: (row in the batch, col, float32 value) on `device`,
    and each user's number of entries."""
    starts, stops = ptr[users], ptr[users + 1]
    entries = entry_ranges(starts, stops)
    lengths = stops - starts
    rows = torch.from_numpy(np.repeat(np.arange(len(users)), lengths)).to(device)
    cols = torch.from_numpy(matrix.cols[entries]).to(device)
    vals = torch.from_numpy(values[entries].astype(np.float32)).to(device)
    return rows, cols, vals, lengths


def csr_row_indices(csr: torch.Tensor) -> torch.Tensor:
    """The row of each stored entry of a CSR tensor (its COO row indices)."""
    crow = csr.crow_indices()
    return torch.repeat_interleave(
        torch.arange(csr.shape[0], device=csr.device), crow[1:] - crow[:-1]
    )


def dense_rows(
    matrix: InteractionMatrix,
    ptr: np.ndarray,
    users: np.ndarray,
    values: np.ndarray,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows of `users` as a dense len(users) x n_items float32 tensor, plus the (row,
    col) positions of their entries, so that seen items can be masked even where a
    weight has decayed to zero."""
    rows, cols, vals, _ = batch_entries(matrix, ptr, users, values, device)
    dense = torch.zeros(len(users), matrix.shape[1], dtype=torch.float32, device=device)
    dense[rows, cols] = vals
    return dense, rows, cols


def csr_rows(
    matrix: InteractionMatrix,
    ptr: np.ndarray,
    users: np.ndarray,
    values: np.ndarray,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows of `users` as a sparse CSR len(users) x n_items float32 tensor (the
    matrix's entries as they are: no dense rows built), plus the (row, col) positions
    of their entries, as `dense_rows`."""
    rows, cols, vals, lengths = batch_entries(matrix, ptr, users, values, device)
    crow = torch.from_numpy(np.concatenate(([0], np.cumsum(lengths))).astype(np.int64))
    csr = torch.sparse_csr_tensor(
        crow.to(device), cols, vals, (len(users), matrix.shape[1]), check_invariants=False
    )
    return csr, rows, cols
