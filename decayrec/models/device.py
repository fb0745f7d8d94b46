"""Torch device choice and a batch's inputs, shared by models and scoring: users' rows
(dense or CSR), CSR columns re-indexed, users' last events."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from decayrec.lake.matrix import EventSequences, InteractionMatrix

# torch warns once per process, at the first CSR tensor (built here, in the models and in
# content), that its sparse CSR support is in beta: nothing an operator can act on.
warnings.filterwarnings(
    "ignore", message=r"Sparse CSR tensor support is in beta state", category=UserWarning
)


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


def user_rows(
    matrix: InteractionMatrix,
    ptr: np.ndarray,
    users: np.ndarray,
    values: np.ndarray,
    device: torch.device,
    csr: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows of `users` as a len(users) x n_items float32 tensor, dense, or sparse CSR
    with `csr` (the matrix's entries as they are: no dense rows built), plus the (row,
    col) positions of their entries, so that seen items can be masked even where a
    weight has decayed to zero."""
    rows, cols, vals, lengths = batch_entries(matrix, ptr, users, values, device)
    shape = (len(users), matrix.shape[1])
    if csr:
        crow = torch.from_numpy(np.concatenate(([0], np.cumsum(lengths))).astype(np.int64))
        x = torch.sparse_csr_tensor(crow.to(device), cols, vals, shape, check_invariants=False)
    else:
        x = torch.zeros(shape, dtype=torch.float32, device=device)
        x[rows, cols] = vals
    return x, rows, cols


def remap_columns(csr: torch.Tensor, mapping: torch.Tensor, n_cols: int) -> torch.Tensor:
    """A CSR tensor's entries in other columns: column j becomes mapping[j] (-1: the
    entry is dropped), of `n_cols` columns; entries stay sorted by column in each row."""
    row = csr_row_indices(csr)
    col = mapping.to(csr.device)[csr.col_indices()]
    keep = col >= 0
    row, col, value = row[keep], col[keep], csr.values()[keep]
    order = torch.argsort(row * n_cols + col, stable=True)
    counts = torch.bincount(row, minlength=csr.shape[0])
    crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return torch.sparse_csr_tensor(crow, col[order], value[order], (csr.shape[0], n_cols))


def last_events(
    sequences: EventSequences,
    users: np.ndarray,
    length: int,
    item_map: np.ndarray | None = None,
    ends: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The last `length` events of each user (before event index `ends`, default their
    last), left-padded: items (-1 = none), times, and each user's reference time.
    `item_map` re-indexes items; events of items it maps to -1 are dropped."""
    users = np.asarray(users, dtype=np.int64)
    starts = sequences.ptr[users]
    ends = sequences.ptr[users + 1] if ends is None else np.asarray(ends, dtype=np.int64)
    items, times = sequences.items, sequences.times
    if item_map is not None:
        known = item_map[items] >= 0
        kept_before = np.concatenate(([0], np.cumsum(known)))
        starts, ends = kept_before[starts], kept_before[ends]
        items, times = item_map[items[known]], times[known]
    index = ends[:, None] - length + np.arange(length)[None, :]
    valid = index >= np.maximum(starts, ends - length)[:, None]
    index = np.where(valid, index, 0)
    if len(items) == 0:
        return np.full(index.shape, -1, np.int64), np.zeros(index.shape), sequences.ref_times[users]
    out_items = np.where(valid, items[index], -1)
    out_times = np.where(valid, times[index], 0.0)
    return out_items, out_times, sequences.ref_times[users]
