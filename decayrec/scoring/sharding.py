"""Scoring split into shards by a hash of user_id, so that shards can run anywhere
(threads, Dask workers) and their union is exactly the single-process lists.

A shard scores its users with `decayrec.scoring.recommend` against the full snapshot
(popularity, id maps) and a model loaded from the run's `model.pt`; a user's list does
not depend on which other users are scored with it, so the merged shards, ordered by
(user_idx, rank), are the same table the single-process `train_and_score` writes.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from decayrec.config import DecayrecConfig
from decayrec.lake.matrix import Snapshot, load_snapshot
from decayrec.models import Model, model_class
from decayrec.models.device import pick_device
from decayrec.scoring.lists import TrainedLists, fit_model
from decayrec.scoring.recommend import configured_lists


@dataclass
class FittedModel:
    """A model fitted on a snapshot and saved in its run directory."""

    run_dir: str
    model_path: str
    model: str
    device: str
    train_seconds: float


@dataclass
class ShardLists:
    """The lists of one shard, on disk (with user_idx, for the merge)."""

    shard: int
    path: str
    n_users: int
    n_rows: int
    n_fallback_rows: int
    seconds: float


def shard_of(user_ids: np.ndarray, n_shards: int) -> np.ndarray:
    """The shard of each user id: CRC-32 of its UTF-8 bytes modulo n_shards (stable
    across processes and machines, unlike Python's salted hash())."""
    return np.fromiter(
        (zlib.crc32(str(u).encode()) % n_shards for u in user_ids),
        dtype=np.int64,
        count=len(user_ids),
    )


def load_model(name: str, path: str | Path, device: torch.device | str = "cpu") -> Model:
    """A saved model of the given name (a model section's `name`), e.g.
    runs/<run_id>/model.pt."""
    return model_class(str(name)).load(path, device=device)


def fit_and_save(config: DecayrecConfig, snapshot: Snapshot, run_id: str) -> FittedModel:
    """Fit the configured model on the snapshot and write runs/<run_id>/model.pt."""
    model, device, run_dir, model_path, seconds = fit_model(config, load_snapshot(snapshot), run_id)
    return FittedModel(str(run_dir), str(model_path), model.name, str(device), round(seconds, 3))


@dataclass
class ShardPlan:
    """What every shard of a scoring run shares: the snapshot, the fitted model, the
    number of shards and the folder they write to."""

    snapshot: Snapshot
    fitted: FittedModel
    n_shards: int
    out_dir: str


def score_shard(config: DecayrecConfig, plan: ShardPlan, shard: int) -> ShardLists:
    """Score the users of one shard; write `<out_dir>/shard-<i>-of-<n>.parquet`."""
    started = time.perf_counter()
    n_shards = plan.n_shards
    matrix = load_snapshot(plan.snapshot)
    device = pick_device(config.model.device)
    model = load_model(plan.fitted.model, plan.fitted.model_path, device)
    users = np.nonzero(shard_of(matrix.user_ids, n_shards) == shard)[0]
    lists = configured_lists(config, model, matrix, device, users=users)
    table = lists.to_arrow(matrix).append_column("user_idx", pa.array(lists.user_idx, pa.int64()))
    path = Path(plan.out_dir) / f"shard-{shard}-of-{n_shards}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return ShardLists(
        shard=shard,
        path=str(path),
        n_users=len(users),
        n_rows=table.num_rows,
        n_fallback_rows=int((~lists.from_model).sum()),
        seconds=round(time.perf_counter() - started, 3),
    )


def merge_shards(
    fitted: FittedModel, shards: list[ShardLists], score_seconds: float
) -> TrainedLists:
    """Concatenate the shards in (user_idx, rank) order into runs/<run_id>/lists.parquet."""
    tables = [pq.read_table(s.path) for s in sorted(shards, key=lambda s: s.shard)]
    merged = pa.concat_tables(tables)
    order = pc.sort_indices(merged, [("user_idx", "ascending"), ("rank", "ascending")])
    merged = merged.take(order).drop_columns(["user_idx"])
    lists_path = Path(fitted.run_dir) / "lists.parquet"
    pq.write_table(merged, lists_path)
    return TrainedLists(
        run_dir=fitted.run_dir,
        model_path=fitted.model_path,
        lists_path=str(lists_path),
        model=fitted.model,
        device=fitted.device,
        train_seconds=fitted.train_seconds,
        score_seconds=round(score_seconds, 3),
        n_users=len(pc.unique(merged["user_id"])),
        n_rows=merged.num_rows,
        n_fallback_rows=sum(s.n_fallback_rows for s in shards),
    )
