"""Item co-occurrence G = X^T X, the statistic EASE inverts and item-item normalises.

For X the users x items matrix with given values, G_ij = sum_u x_ui x_uj, or, with a
pair half-life h (time-gap-decayed relations, as TALE, WSDM 2025, weights them):

    G_ij = sum_u x_ui x_uj 2^(-|t_ui - t_uj| / h)

t_ui the time of the user's latest interaction with i: two items a user took up on the
same evening are related more strongly than two taken up years apart. It is built
whole (items x items) or one block of rows [start, stop) at a time (width x items:
bounded memory on large catalogues; G is symmetric, so these are also its columns), in
whichever of two ways costs less:

* dense products of user batches, X_b[:, block]^T X_b: n_users * width * n_items
  multiply-adds of fast BLAS, best for small catalogues;
* scattering each user's (item, item) pairs into G: sum_u n_u^2 pairs, best for large
  sparse catalogues, where the dense way would take hours.
"""

from __future__ import annotations

import numpy as np
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models.device import user_rows

# G is summed in float64 while a float64 G of the catalogue takes at most 2 GiB: the
# sum is then the same to float32's precision in whatever order the users come (one
# process, or user shards added up on Dask: decayrec.scoring.distributed), so the lists
# never depend on the sharding. Larger catalogues sum in float32, where two items whose
# scores differ by less than about 1e-5 relative can swap between the two.
FLOAT64_SUMS_MAX_ITEMS = 16_384


def sum_dtype(n_items: int) -> torch.dtype:
    """The dtype sums over users are accumulated in (see FLOAT64_SUMS_MAX_ITEMS)."""
    return torch.float64 if n_items <= FLOAT64_SUMS_MAX_ITEMS else torch.float32


# A scattered pair costs about as much as this many multiply-adds of a dense product
# (2 CPU cores: 2.4e-8 s per pair at 10^7 events, 3e-11 s per multiply-add).
SCATTER_COST = 800
PAIR_BATCH = 1 << 24  # (item, item) pairs scattered at a time: ~0.5 GB of temporaries


def gram_matrix(
    matrix: InteractionMatrix,
    values: np.ndarray,
    user_batch: int,
    device: torch.device,
    rows: tuple[int, int] | None = None,
    pair_half_life_days: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """G[start:stop, :] = X[:, start:stop]^T X (summed in `dtype`) for X = the matrix with
    `values`; the whole G (items x items) when `rows` is None. With `pair_half_life_days`
    > 0 each user's pairs are decayed by their time gap (`matrix.times`; pairs are
    scattered)."""
    if pair_half_life_days > 0 and matrix.times is None:
        raise ValueError("gap-decayed pairs need the matrix's times (a snapshot without them)")
    n_users, n_items = matrix.shape
    start, stop = rows if rows is not None else (0, n_items)
    width = stop - start
    ptr = matrix.row_pointer()
    per_user = np.diff(ptr)
    pairs = int((per_user.astype(np.int64) ** 2).sum())
    gram = torch.zeros(width, n_items, dtype=dtype, device=device)
    if pair_half_life_days <= 0 and SCATTER_COST * pairs >= n_users * n_items * width:
        for first in range(0, n_users, user_batch):
            users = np.arange(first, min(first + user_batch, n_users))
            x, _, _ = user_rows(matrix, ptr, users, values, device)
            x = x.to(dtype)
            gram.addmm_(x[:, start:stop].T, x)
        return gram
    # Users grouped by their number of items L: each group's pairs are an (n, L, L)
    # broadcast, so no per-pair index arithmetic (10^7 events: 4.8 s instead of 12.4 s).
    flat = gram.view(-1)
    cols = torch.from_numpy(matrix.cols).to(device)
    vals = torch.from_numpy(values.astype(np.float32)).to(device)
    if pair_half_life_days > 0:  # in units of the half-life, relative to the earliest time
        times = matrix.times - matrix.times.min(initial=0.0)
        scaled = torch.from_numpy(times / (86400.0 * pair_half_life_days)).to(device)
    order = np.argsort(per_user, kind="stable")
    for group in np.split(order, np.flatnonzero(np.diff(per_user[order])) + 1):
        length = int(per_user[group[0]]) if len(group) else 0
        if length == 0:
            continue
        chunk = max(1, PAIR_BATCH // length**2)
        for first in range(0, len(group), chunk):
            users = group[first : first + chunk]
            entries = torch.from_numpy(ptr[users][:, None] + np.arange(length)[None, :])
            c, v = cols[entries.to(device)], vals[entries.to(device)]
            pair_index = ((c[:, :, None] - start) * n_items + c[:, None, :]).view(-1)
            products = v[:, :, None] * v[:, None, :]
            if pair_half_life_days > 0:
                t = scaled[entries.to(device)]
                gap = (t[:, :, None] - t[:, None, :]).abs()
                products = products * torch.exp2(-gap).to(torch.float32)
            products = products.reshape(-1)
            if width < n_items:
                inside = ((c >= start) & (c < stop))[:, :, None].expand(-1, -1, length)
                inside = inside.reshape(-1)
                pair_index, products = pair_index[inside], products[inside]
            flat.index_add_(0, pair_index, products.to(dtype))
    return gram
