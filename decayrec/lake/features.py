"""The decay-weighted user-item matrix, built in DuckDB SQL and kept as a Parquet snapshot.

    w(u, i) = sum over events e of (u, i) with ts_e < T of type_weight(e.type) * K(T - ts_e)

T is the as-of time of the run; ages count from it or from the user's own latest event
(`decay.reference`). The nightly run and every backtest build the matrix with the same
function (:func:`compute_features`) on the events they may see. Every (user, item) pair
with an event before T is in the matrix, even where its weight has decayed to nothing,
so "already seen" never depends on decay.

The temp tables it makes live in a :class:`~decayrec.lake.session.LakeBuild`; the matrix
and its snapshot files are the data types of :mod:`decayrec.lake.matrix`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from decayrec.config import DecayConfig, DecayrecConfig
from decayrec.lake.decay import effective_half_life
from decayrec.lake.dynamic import estimate_user_memory
from decayrec.lake.ingest import IngestError, source_files
from decayrec.lake.matrix import (
    SEQUENCES_FILE,
    SNAPSHOT_META,
    SNAPSHOTS,
    InteractionMatrix,
    Snapshot,
    SnapshotError,
    assemble_matrix,
    read_snapshot,
    snapshot_dir,
    snapshot_problem,
)
from decayrec.lake.session import LakeBuild, LakeSession
from decayrec.lake.staging import sha256_of
from decayrec.sqlfiles import connect, run_script, sql

log = logging.getLogger(__name__)


def prepare_decay_tables(build: LakeBuild, decay: DecayConfig) -> None:
    """Make type_params, the decay_kernel macro and an empty user_memory for the feature
    SQL (and the splits, which count events of weighted types)."""
    build.empty_table("type_params", "event_type varchar, weight double, memory double")
    build.executemany(
        "insert into type_params values (?, ?, ?)",
        [(t, w, decay.type_memory.get(t, 1.0)) for t, w in decay.type_weights.items()],
    )
    build.macro("decay_kernel", sql("features/decay_kernel"))
    build.empty_table("user_memory", "user_id varchar, memory double, drift double")


def kernel_parameters(decay: DecayConfig) -> dict[str, object]:
    """The bound parameters of sql/features/decayed_interactions.sql."""
    return {
        "kernel": decay.kernel,
        "reference": decay.reference,
        "recency_events": decay.recency_events,
        "half_life_days": decay.half_life_days,
        "power_tau_days": decay.power_tau_days,
        "power_exponent": decay.power_exponent,
        "sigmoid_midpoint_days": decay.sigmoid_midpoint_days,
        "sigmoid_width_days": decay.sigmoid_width_days,
        "window_days": decay.window_days,
        "saturation": decay.saturation,
        "saturation_cap": decay.saturation_cap,
    }


def compute_interactions(
    build: LakeBuild,
    decay: DecayConfig,
    as_of: datetime,
    user_memory: pa.Table | None = None,
) -> None:
    """Make the temp tables interactions, user_index, item_index from the build's view
    `source_events`.

    Each user's memory (user_id, memory, drift) comes from `user_memory` when given;
    with `decay.user_decay = 'drift'` it is estimated instead, in two passes: the
    first, with every memory at 1, gives the matrix from which each user's drift is
    measured (decayrec.lake.dynamic); the second applies the memories.
    """
    prepare_decay_tables(build, decay)
    if decay.user_decay == "drift":
        _interactions(build, decay, as_of)
        user_memory = estimate_user_memory(read_matrix(build), build, decay)
    if user_memory is not None:
        build.arrow("given_memory", user_memory)
        build.execute("insert into user_memory select user_id, memory, drift from given_memory")
    _interactions(build, decay, as_of)


def _interactions(
    build: LakeBuild, decay: DecayConfig, as_of: datetime, indices: bool = True
) -> None:
    build.table(
        "interactions",
        sql("features/decayed_interactions"),
        {"as_of": as_of, **kernel_parameters(decay)},
    )
    if indices:
        _indices(build)


def _indices(build: LakeBuild) -> None:
    """user_index and item_index (with the items' popularity) of the interactions table."""
    build.table("user_index", sql("features/user_index"))
    build.table("item_index", sql("features/item_index"))


def sequence_length(config: DecayrecConfig) -> int:
    """Events per user a snapshot keeps for sequence models (0: none, the model needs none)."""
    return config.model.sequence_events


def read_sequences(build: LakeBuild, as_of: datetime, max_len: int) -> pa.Table:
    """Each user's last `max_len` events before `as_of` (the temp tables of
    compute_interactions must exist)."""
    return build.sql(
        sql("features/sequences"), params={"as_of": as_of, "max_len": max_len}
    ).to_arrow_table()


def read_matrix(
    build: LakeBuild, as_of: datetime | None = None, sequence_len: int = 0
) -> InteractionMatrix:
    """The interactions temp table as a matrix; with `sequence_len` > 0 also each user's
    last `sequence_len` events before `as_of`."""
    users = build.sql("select user_id from user_index order by user_idx").to_arrow_table()
    items = build.sql(
        "select item_id, popularity from item_index order by item_idx"
    ).to_arrow_table()
    coo = build.sql(sql("features/matrix")).to_arrow_table()
    sequences = None
    if sequence_len > 0:
        if as_of is None:
            raise ValueError("read_matrix: sequences need the as-of time")
        sequences = read_sequences(build, as_of, sequence_len)
    return assemble_matrix(users, items, coo, sequences, as_of)


def compute_features(
    build: LakeBuild, config: DecayrecConfig, as_of: datetime
) -> InteractionMatrix:
    """The matrix of the events in the build's view `source_events` as of `as_of`,
    exactly as the nightly run builds it (the temp tables interactions, user_index and
    item_index are left in the build). The nightly points source_events at the lake's
    events; a backtest at the events its split may train on."""
    compute_interactions(build, config.decay, as_of)
    return read_matrix(build, as_of, sequence_length(config))


# the user shards of a feature build: given the snapshot's directory, the paths of the
# shards' interactions files (shard_interactions), computed wherever they run
ShardMap = Callable[[Path], list[Path]]


def shardable_features(config: DecayrecConfig) -> bool:
    """Whether the features can be built by user shards: every user's pairs come from their
    own events alone. Not with drift-estimated memories (a pass over the whole matrix) or
    event sequences (read with the global indices)."""
    return config.decay.user_decay != "drift" and not sequence_length(config)


def shard_interactions(
    config: DecayrecConfig, as_of: datetime, shard: int, n_shards: int, out_dir: Path
) -> Path:
    """The map of a sharded feature build: the interactions (sql/features/
    decayed_interactions.sql) of the users whose user_id hashes to `shard`, from their own
    events in the lake (opened read-only, so shards run side by side), written as
    `<out_dir>/interactions-<shard>-of-<n>.parquet`."""
    with LakeSession.connect(config.lake_path, read_only=True) as lake, lake.build() as build:
        params = {"shard": shard, "n_shards": n_shards}
        build.table("source_events", sql("features/shard_events"), params)
        prepare_decay_tables(build, config.decay)
        _interactions(build, config.decay, as_of, indices=False)
        table = build.sql("from interactions").to_arrow_table()
    path = Path(out_dir) / f"interactions-{shard}-of-{n_shards}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def build_snapshot(
    config: DecayrecConfig, as_of: datetime, shards: ShardMap | None = None
) -> Snapshot:
    """Compute the run's matrix from the lake's events and write it as a Parquet snapshot.

    The snapshot id hashes the events before T, T itself and the decay settings, so the
    same data and settings always give the same id (and the same files). With `shards`
    (and `shardable_features`), the interactions are computed by user shards (the map,
    `shard_interactions`) and the reduce here concatenates them and derives the id maps
    and the items' popularity (a sum over users) with the same SQL as one process.
    """
    with LakeSession.connect(config.lake_path) as lake:
        run_script(lake.con, "lake/schema")
        n_events, content_hash = lake.con.execute(
            sql("features/events_fingerprint"), {"as_of": as_of}
        ).fetchall()[0]
    key = json.dumps(
        {
            "as_of": as_of.isoformat(),
            "n_events": n_events,
            "hash": str(content_hash),
            "decay": config.decay.model_dump(mode="json"),
            "sequence_len": sequence_length(config),
        },
        sort_keys=True,
    )
    snapshot_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    out = snapshot_dir(config.data_dir, snapshot_id)
    meta_path = out / SNAPSHOT_META
    if meta_path.exists():
        try:
            stored = read_snapshot(meta_path, config.data_dir)
            problem = snapshot_problem(stored)
        except SnapshotError as exc:
            stored, problem = None, str(exc)
        if problem is None:
            return stored
        log.warning("snapshot %s is rebuilt: %s", snapshot_id, problem)
        meta_path.unlink()  # written again last, once every file is
    parts = None
    if shards is not None and shardable_features(config):
        parts = shards(out / "shards")  # the lake is closed here: the shards read it
    elif shards is not None:
        log.info("features are built in one process (drift memories or event sequences)")
    with LakeSession.connect(config.lake_path) as lake, lake.build() as build:
        if parts is None:
            build.view("source_events", "select * from events")
            compute_interactions(build, config.decay, as_of)
        else:
            prepare_decay_tables(build, config.decay)
            build.arrow("shard_interactions", pa.concat_tables(pq.read_table(p) for p in parts))
            build.table("interactions", "select * from shard_interactions")
            _indices(build)
        # Written through Arrow so no path is ever pasted into SQL.
        coo = build.sql(sql("features/matrix")).to_arrow_table()
        users = build.sql("from user_index").to_arrow_table()
        items = build.sql("from item_index").to_arrow_table()
        tables = {
            "matrix.parquet": coo,
            "users.parquet": users,
            "items.parquet": items,
            "user_decay.parquet": user_decay_table(build, config.decay),
        }
        if sequence_length(config):
            tables[SEQUENCES_FILE] = read_sequences(build, as_of, sequence_length(config))
    if parts is not None:
        shutil.rmtree(out / "shards", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    if not sequence_length(config):
        (out / SEQUENCES_FILE).unlink(missing_ok=True)
    for name, table in tables.items():
        pq.write_table(table, out / name)
    snapshot = Snapshot(
        snapshot_id=snapshot_id,
        path=str(Path(SNAPSHOTS) / snapshot_id),  # relative to the data dir
        as_of_time=as_of.isoformat(),
        n_users=users.num_rows,
        n_items=items.num_rows,
        n_nonzero=coo.num_rows,
        n_events=n_events,
        has_sequences=bool(sequence_length(config)),
        files={name: sha256_of(out / name) for name in tables},
    )
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(snapshot), indent=2))
    tmp.replace(meta_path)  # atomic: snapshot.json is there only when complete
    return snapshot.under(config.data_dir)


def user_decay_table(build: LakeBuild, decay: DecayConfig) -> pa.Table:
    """Per user: memory, drift (null where not estimated) and the effective half-life."""
    table = build.sql(
        "select u.user_id, coalesce(m.memory, 1.0) as memory, m.drift "
        "from user_index as u left join user_memory as m on m.user_id = u.user_id "
        "order by u.user_idx"
    ).to_arrow_table()
    memory = table["memory"].to_numpy()
    half_life = np.array([effective_half_life(decay, float(m)) for m in memory])
    return table.append_column("half_life_days", pa.array(half_life, pa.float64()))


class NoEvents(ValueError):
    """The lake holds no event before the as-of instant: nothing to recommend from."""


def require_events(config: DecayrecConfig, as_of: datetime) -> int:
    """The number of events in the lake before `as_of`; raises NoEvents (one paragraph
    naming the lake, the instant and any source pattern that matches no file) when there
    are none, so a run fails instead of publishing empty lists."""
    n_before = n_events = 0
    if Path(config.lake_path).exists():
        con = connect(config.lake_path)
        try:
            run_script(con, "lake/schema")
            n_before, n_events = con.execute(
                sql("features/events_before"), {"as_of": as_of}
            ).fetchall()[0]
        finally:
            con.close()
    if n_before:
        return int(n_before)
    held = (
        f"it holds {n_events} events, all at or after that instant"
        if n_events
        else "it holds no events at all"
    )
    unmatched = _sources_without_files(config)
    if unmatched:
        held += "; no file matches the source path " + ", ".join(unmatched)
    raise NoEvents(
        f"no events before {as_of.isoformat()} in the lake ({config.lake_path}): nothing to "
        f"recommend from ({held})"
    )


@dataclass(frozen=True)
class EventTypeAges:
    """How much of one event type the lake holds before an as-of instant, and how old."""

    event_type: str
    n_events: int
    oldest_age_days: float
    newest_age_days: float


def event_type_ages(config: DecayrecConfig, as_of: datetime) -> list[EventTypeAges]:
    """Per event type in the lake before `as_of` (by type): its count and the ages (days)
    of its oldest and newest event; empty when there is no lake."""
    if not Path(config.lake_path).exists():
        return []
    with LakeSession.connect(config.lake_path) as lake:
        run_script(lake.con, "lake/schema")
        rows = lake.con.execute(sql("lake/event_type_ages"), {"as_of": as_of}).fetchall()
    return [EventTypeAges(t, int(n), float(oldest), float(newest)) for t, n, oldest, newest in rows]


def _sources_without_files(config: DecayrecConfig) -> list[str]:
    unmatched = []
    for source in config.sources:
        try:
            if not source_files(source):
                unmatched.append(source.path)
        except IngestError:  # a missing plain path
            unmatched.append(source.path)
    return unmatched
