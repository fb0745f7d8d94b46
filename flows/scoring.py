"""Sharded scoring: the users split by a hash of user_id, one mapped task per shard,
on the task runner the configuration names (threads, or Dask through prefect-dask).

On Dask the whole nightly's per-user work is sharded by user: the features (one mapped
task per shard computes its users' decayed interactions from their own events; the
reduce derives the id maps and the items' popularity, decayrec.lake.features), the item
side's fit (one mapped task per shard sums its users' statistics, a reduce solves the
item side once, decayrec.scoring.distributed), then the scoring shards."""

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from decayrec.config import DecayrecConfig
from decayrec.lake.features import build_snapshot, require_events
from decayrec.lake.matrix import Snapshot
from decayrec.scoring.distributed import plan_fit
from decayrec.scoring.lists import TrainedLists
from decayrec.scoring.sharding import FittedModel, ShardLists, ShardPlan
from tasks.features import cached_features, features_shard
from tasks.scoring import fit, fit_one_shard, fit_reduce, merge, score_one_shard
from tasks.train import train


def sharded_on_dask(config: DecayrecConfig) -> bool:
    """Whether every stage's per-user work runs in user shards on Dask."""
    o = config.orchestration
    return o.task_runner == "dask" and o.score_shards > 1


def task_runner_for(config: DecayrecConfig) -> Any:
    """The task runner of the scoring shards (orchestration.task_runner)."""
    o = config.orchestration
    if o.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if o.dask_address:
            return DaskTaskRunner(address=o.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": o.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": ":0",
            }
        )
    return ThreadPoolTaskRunner(max_workers=min(o.score_shards, 8))


@flow(name="score-shards", log_prints=True)
def score_shards(
    config: DecayrecConfig, snapshot: Snapshot, fitted: FittedModel, out_dir: str
) -> list[ShardLists]:
    """Score every user, one mapped task per shard of orchestration.score_shards."""
    plan = ShardPlan(snapshot, fitted, config.orchestration.score_shards, out_dir)
    return _score_mapped(config, plan)


def _score_mapped(config: DecayrecConfig, plan: ShardPlan) -> list[ShardLists]:
    futures = score_one_shard.map(unmapped(config), unmapped(plan), list(range(plan.n_shards)))
    return [f.result() for f in futures]


@flow(name="fit-and-score-shards", log_prints=True)
def fit_and_score_shards(
    config: DecayrecConfig, snapshot: Snapshot, run_id: str, out_dir: str
) -> tuple[FittedModel, list[ShardLists]]:
    """The item side fitted by map-reduce over the user shards (one mapped task per shard,
    then the reduce), or in one task when the model's fit is no sum over users; then every
    shard scored."""
    n_shards = config.orchestration.score_shards
    plan = plan_fit(config, snapshot, n_shards, out_dir)
    if plan is None:
        get_run_logger().info(
            "%s is not fitted by sums over users: its item side is fitted in one process",
            config.model.name,
        )
        fitted = fit(config, snapshot, run_id)
    else:
        parts = fit_one_shard.map(unmapped(config), unmapped(plan), list(range(n_shards)))
        fitted = fit_reduce(config, plan, [p.result() for p in parts], run_id)
    return fitted, _score_mapped(config, ShardPlan(snapshot, fitted, n_shards, out_dir))


def score_sharded(
    config: DecayrecConfig, snapshot: Snapshot, fitted: FittedModel, out_dir: str | None = None
) -> TrainedLists:
    """Run the shards on the configured task runner and merge them into the run's lists."""
    started = time.perf_counter()
    out_dir = out_dir or str(Path(fitted.run_dir) / "shards")
    runner = task_runner_for(config)
    get_run_logger().info(
        "scoring %d users in %d shards on %s",
        snapshot.n_users,
        config.orchestration.score_shards,
        type(runner).__name__,
    )
    shards = score_shards.with_options(task_runner=runner)(config, snapshot, fitted, out_dir)
    return merge(fitted, shards, time.perf_counter() - started)


def fit_and_score_sharded(config: DecayrecConfig, snapshot: Snapshot, run_id: str) -> TrainedLists:
    """Fit by map-reduce and score in shards on the configured task runner, one cluster
    for both; the shards merged into the run's lists."""
    started = time.perf_counter()
    runner = task_runner_for(config)
    out_dir = str(Path(config.data_dir) / "runs" / run_id / "shards")
    get_run_logger().info(
        "fitting and scoring %d users in %d shards on %s",
        *(snapshot.n_users, config.orchestration.score_shards, type(runner).__name__),
    )
    sharded = fit_and_score_shards.with_options(task_runner=runner)
    fitted, shards = sharded(config, snapshot, run_id, out_dir)
    return merge(fitted, shards, time.perf_counter() - started - fitted.train_seconds)


def train_lists(config: DecayrecConfig, snapshot: Snapshot, run_id: str) -> TrainedLists:
    """The train stage: one task when orchestration.score_shards is 1; on Dask the fit by
    map-reduce over the user shards and the sharded scoring; else a fit task and the
    sharded scoring."""
    if config.orchestration.score_shards <= 1:
        return train(config, snapshot, run_id)
    if sharded_on_dask(config):
        return fit_and_score_sharded(config, snapshot, run_id)
    return score_sharded(config, snapshot, fit(config, snapshot, run_id))


@flow(name="features-shards", log_prints=True)
def features_shards(config: DecayrecConfig, as_of_time: datetime) -> Snapshot:
    """The snapshot built by user shards: one mapped task per shard computes its users'
    interactions, the reduce (here) the id maps, the popularity and the files."""
    n_shards = config.orchestration.score_shards

    def mapped(out_dir: Path) -> list[Path]:
        futures = features_shard.map(
            *(unmapped(config), unmapped(as_of_time), list(range(n_shards))),
            *(unmapped(n_shards), unmapped(out_dir)),
        )
        return [f.result() for f in futures]

    return build_snapshot(config, as_of_time, mapped)


def features_stage(config: DecayrecConfig, as_of_time: datetime) -> Snapshot:
    """The features stage: by user shards on Dask (sharded_on_dask), else the cached
    features task."""
    if not sharded_on_dask(config):
        return cached_features(config, as_of_time)
    require_events(config, as_of_time)
    return features_shards.with_options(task_runner=task_runner_for(config))(config, as_of_time)
