"""Torch device choice and the sparse-to-dense helper shared by models and scoring."""

from __future__ import annotations

import numpy as np
import torch

from decayrec.features import InteractionMatrix


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("model.device is 'cuda' but torch.cuda.is_available() is False")
        return torch.device("cuda")
    return torch.device("cpu")


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
    starts, stops = ptr[users], ptr[users + 1]
    lengths = stops - starts
    total = int(lengths.sum())
    # Entry positions of all the users' rows, concatenated, without a Python loop.
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    entries = offsets + np.arange(total)
    row_of_entry = np.repeat(np.arange(len(users)), lengths)
    rows = torch.from_numpy(row_of_entry).to(device)
    cols = torch.from_numpy(matrix.cols[entries]).to(device)
    dense = torch.zeros(len(users), matrix.shape[1], dtype=torch.float32, device=device)
    dense[rows, cols] = torch.from_numpy(values[entries].astype(np.float32)).to(device)
    return dense, rows, cols
