"""The item side fitted by map-reduce over user shards (orchestration.task_runner: dask).

Users are split by the hash of user_id that the scoring shards use
(`decayrec.scoring.sharding.shard_of`). A model whose item side is a sum over users
(`Model.summable`: EASE's gram X^T X or its gap-decayed form, item-item's co-occurrences
and their diagonal) is fitted in three steps:

* `plan_fit` (the driver): the weight scale every shard divides by (the mean positive
  weight: a sum and a count over every user);
* `shard_sums` (the map, one task per shard, anywhere): `Model.user_sums` of the shard's
  users' rows, written as a model file `sums-<i>-of-<n>.pt` (n_items^2 float64 for a gram
  up to FLOAT64_SUMS_MAX_ITEMS items, float32 above: what a shard ships to the reduce);
* `fit_from_shards` (the reduce): the parts summed key by key, one at a time (memory:
  two grams), then `Model.fit_sums` once (EASE's Cholesky solve, item-item's neighbour
  selection) and the model saved as runs/<run_id>/model.pt, as `fit_and_save` does.

A user's row enters exactly one shard, so the summed statistics are the single process's
up to the order of the additions: in float64 (decayrec.models.cooccurrence) the sums, once
in float32, are the same, and the reduce solves on the machine's cores as one process does
(`machine_threads`), so the lists are the same, scores included; above
FLOAT64_SUMS_MAX_ITEMS the float32 sums can let near-tied items swap. Models that are no
such sum (iALS, the sequence model, item-item whose co-occurrences do not fit whole) are
fitted in one process (`plan_fit` returns None).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import torch

from decayrec.config import DecayrecConfig
from decayrec.lake.matrix import InteractionMatrix, Snapshot, load_snapshot
from decayrec.models import make_model
from decayrec.models.base import positive_mean
from decayrec.models.files import read_model_file, write_model_file
from decayrec.scoring.lists import run_dir
from decayrec.scoring.sharding import FittedModel, shard_of


@dataclass
class FitPlan:
    """What every map task of a sharded fit shares."""

    snapshot: Snapshot
    n_shards: int
    scale: float  # positive_mean of every user's weights
    out_dir: str  # where the shards write their sums


@dataclass
class ShardSums:
    """One shard's item-side sums, on disk."""

    shard: int
    path: str
    n_users: int
    n_bytes: int  # the size of the sums: what the shard ships to the reduce
    seconds: float
    peak_rss_mb: float  # the peak resident memory of the process that ran the shard


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, MiB: VmHWM of /proc/self/status
    (ru_maxrss would keep the parent's size at the fork that started a worker process),
    else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def shard_users(matrix: InteractionMatrix, shard: int, n_shards: int) -> np.ndarray:
    """The user_idx of the users of `shard` (the scoring shards' split)."""
    return np.nonzero(shard_of(matrix.user_ids, n_shards) == shard)[0]


def user_rows(matrix: InteractionMatrix, users: np.ndarray) -> InteractionMatrix:
    """The rows of `users` (sorted user_idx) as a matrix of their own, rows renumbered
    0..len(users)-1, every item kept."""
    ptr = matrix.row_pointer()
    counts = ptr[users + 1] - ptr[users]
    at = np.repeat(ptr[users], counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    return InteractionMatrix(
        user_ids=matrix.user_ids[users],
        item_ids=matrix.item_ids,
        rows=np.repeat(np.arange(len(users), dtype=np.int64), counts),
        cols=matrix.cols[at],
        weights=matrix.weights[at],
        popularity=matrix.popularity,
        score_weights=None if matrix.score_weights is None else matrix.score_weights[at],
        times=None if matrix.times is None else matrix.times[at],
    )


def plan_fit(
    config: DecayrecConfig, snapshot: Snapshot, n_shards: int, out_dir: str | Path
) -> FitPlan | None:
    """The plan of a sharded fit, or None when the configured model's fit is not a sum
    over users (it is fitted in one process)."""
    model, _ = make_model(config)
    if not model.summable(snapshot.n_items):
        return None
    weights = pq.read_table(Path(snapshot.path) / "matrix.parquet", columns=["weight"])
    scale = positive_mean(weights["weight"].to_numpy().astype(np.float64))
    return FitPlan(snapshot, n_shards, scale, str(out_dir))


def shard_sums(config: DecayrecConfig, plan: FitPlan, shard: int) -> ShardSums:
    """The map: the item-side sums of the users of one shard, written to the plan's
    folder as `sums-<shard>-of-<n>.pt`."""
    started = time.perf_counter()
    matrix = load_snapshot(plan.snapshot)
    users = shard_users(matrix, shard, plan.n_shards)
    model, _ = make_model(config)
    sums = model.user_sums(user_rows(matrix, users), plan.scale)
    path = Path(plan.out_dir) / f"sums-{shard}-of-{plan.n_shards}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_model_file({key: value.cpu() for key, value in sums.items()}, path)
    return ShardSums(
        shard=shard,
        path=str(path),
        n_users=len(users),
        n_bytes=sum(v.numel() * v.element_size() for v in sums.values()),
        seconds=round(time.perf_counter() - started, 3),
        peak_rss_mb=peak_rss_mb(),
    )


@contextmanager
def machine_threads() -> Iterator[None]:
    """torch on every physical core of this machine for the block. The reduce is the only
    task running when it solves (the map is done, the scoring not begun), so it takes the
    cores a Dask worker's one thread leaves idle; and LAPACK's Cholesky rounds differently
    with another number of threads, so the solve is then the one a single process makes
    on the same kind of machine (the sums are identical: float64, any order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(psutil.cpu_count(logical=False) or os.cpu_count() or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_from_shards(
    config: DecayrecConfig, plan: FitPlan, parts: list[ShardSums], run_id: str
) -> FittedModel:
    """The reduce: the shards' sums added up, the model's item side solved once and saved
    as runs/<run_id>/model.pt; the shards' files are removed."""
    started = time.perf_counter()
    model, device = make_model(config)
    sums: dict[str, torch.Tensor] = {}
    for part in sorted(parts, key=lambda p: p.shard):
        for key, value in read_model_file(part.path).items():
            if key in sums:
                sums[key] += value
            else:
                sums[key] = value
        Path(part.path).unlink()
    items = pq.read_table(Path(plan.snapshot.path) / "items.parquet", columns=["item_id"])
    item_ids = np.asarray(items["item_id"].to_numpy(zero_copy_only=False), dtype=object)
    with machine_threads():
        model.fit_sums(sums, plan.scale, item_ids)
    directory = run_dir(config, run_id)
    model_path = directory / "model.pt"
    model.save(model_path)
    seconds = max(p.seconds for p in parts) + time.perf_counter() - started
    return FittedModel(str(directory), str(model_path), model.name, str(device), round(seconds, 3))
