from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.utilities.hashing import hash_objects

from decayrec.config import DecayrecConfig
from decayrec.lake.features import (
    build_snapshot,
    require_events,
    sequence_length,
    shard_interactions,
)
from decayrec.lake.matrix import (
    SNAPSHOT_META,
    Snapshot,
    SnapshotError,
    read_snapshot,
    snapshot_dir,
    snapshot_problem,
)
from decayrec.sqlfiles import connect, sql
from tasks import TIMEOUTS


def events_cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """The feature build's cache key: which lake, the as-of time, a fingerprint of the
    events before it (count + order-independent hash: one cheap scan), the decay settings
    and how many events per user are kept for sequence models. New or changed events, or
    other settings, give a new key; a rerun of the same night (after a training failure,
    say) gets the persisted snapshot."""
    config: DecayrecConfig = parameters["config"]
    as_of: datetime = parameters["as_of_time"]
    try:
        con = connect(config.lake_path)
        try:
            n_events, content_hash = con.execute(
                sql("features/events_fingerprint"), {"as_of": as_of}
            ).fetchall()[0]
        finally:
            con.close()
    except Exception:  # no lake yet: nothing to key on, build without caching
        return None
    return hash_objects(
        str(Path(config.lake_path).resolve()),
        as_of.isoformat(),
        int(n_events),
        str(content_hash),
        config.decay.model_dump(mode="json"),
        sequence_length(config),
    )


@task(
    name="features",
    cache_key_fn=events_cache_key,
    persist_result=True,
    timeout_seconds=TIMEOUTS["features"],
)
def features(config: DecayrecConfig, as_of_time: datetime) -> Snapshot:
    """Build the decay-weighted matrix as of T and write its Parquet snapshot."""
    return build_snapshot(config, as_of_time)


def cached_features(config: DecayrecConfig, as_of_time: datetime) -> Snapshot:
    """The features task (its results persisted in Prefect's result storage,
    PREFECT_LOCAL_STORAGE_PATH by default). The snapshot is always read back from the
    current data dir's snapshot.json (never from a path the cache remembers) and checked
    against its checksums: a cached snapshot whose files were deleted or changed since
    is built again. Fails (NoEvents) when the lake holds no event before `as_of_time`."""
    require_events(config, as_of_time)
    cached = features(config, as_of_time)
    try:
        meta = snapshot_dir(config.data_dir, cached.snapshot_id) / SNAPSHOT_META
        snapshot = read_snapshot(meta, config.data_dir)
        problem = snapshot_problem(snapshot)
    except SnapshotError as exc:
        problem = str(exc)
    if problem is None:
        return snapshot
    return features.with_options(refresh_cache=True)(config, as_of_time)


@task(name="features-shard", timeout_seconds=TIMEOUTS["features"])
def features_shard(
    config: DecayrecConfig, as_of_time: datetime, shard: int, n_shards: int, out_dir: Path
) -> Path:
    """The interactions of the users of one shard, from their own events (a Parquet file)."""
    return shard_interactions(config, as_of_time, shard, n_shards, out_dir)
