"""Sharded training output: fit once (or by map-reduce over user shards), score the users
shard by shard (mapped tasks)."""

from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.lake.matrix import Snapshot
from decayrec.scoring.distributed import FitPlan, ShardSums, fit_from_shards, shard_sums
from decayrec.scoring.lists import TrainedLists
from decayrec.scoring.sharding import (
    FittedModel,
    ShardLists,
    ShardPlan,
    fit_and_save,
    merge_shards,
    score_shard,
)
from tasks import TIMEOUTS
from tasks.ops import maybe_inject_train_fault, training_slot


@task(name="fit", timeout_seconds=TIMEOUTS["train"])
def fit(config: DecayrecConfig, snapshot: Snapshot, run_id: str) -> FittedModel:
    """Fit the model on the snapshot and save it as runs/<run_id>/model.pt."""
    logger = get_run_logger()
    logger.info(
        "fitting %s on %d users x %d items", config.model.name, snapshot.n_users, snapshot.n_items
    )
    with training_slot(config):
        maybe_inject_train_fault(config, snapshot)
        fitted = fit_and_save(config, snapshot, run_id)
    logger.info("fitted in %.1f s on %s", fitted.train_seconds, fitted.device)
    return fitted


@task(name="fit-shard", timeout_seconds=TIMEOUTS["train"])
def fit_one_shard(config: DecayrecConfig, plan: FitPlan, shard: int) -> ShardSums:
    """The map of a sharded fit: the item-side sums of the users of `shard`."""
    result = shard_sums(config, plan, shard)
    get_run_logger().info(
        "fit shard %d/%d: %d users, %.1f MB of sums in %.1f s (peak RSS %.0f MB)",
        *(shard + 1, plan.n_shards, result.n_users, result.n_bytes / 1e6, result.seconds),
        result.peak_rss_mb,
    )
    return result


@task(name="fit-reduce", timeout_seconds=TIMEOUTS["train"])
def fit_reduce(
    config: DecayrecConfig, plan: FitPlan, parts: list[ShardSums], run_id: str
) -> FittedModel:
    """The reduce of a sharded fit: the shards' sums added, the item side solved once and
    saved as runs/<run_id>/model.pt."""
    with training_slot(config):
        maybe_inject_train_fault(config, plan.snapshot)
        fitted = fit_from_shards(config, plan, parts, run_id)
    get_run_logger().info(
        "fitted %s from %d shards in %.1f s on %s",
        *(fitted.model, len(parts), fitted.train_seconds, fitted.device),
    )
    return fitted


@task(name="score-shard", timeout_seconds=TIMEOUTS["score"])
def score_one_shard(config: DecayrecConfig, plan: ShardPlan, shard: int) -> ShardLists:
    """Top-K lists of the users whose user_id hashes to `shard`."""
    result = score_shard(config, plan, shard)
    get_run_logger().info(
        "shard %d/%d: %d users, %d rows in %.1f s",
        shard + 1,
        plan.n_shards,
        result.n_users,
        result.n_rows,
        result.seconds,
    )
    return result


@task(name="merge-shards", timeout_seconds=TIMEOUTS["io"])
def merge(fitted: FittedModel, shards: list[ShardLists], score_seconds: float) -> TrainedLists:
    """The shards' lists as one table, in the single-process order."""
    return merge_shards(fitted, shards, score_seconds)
