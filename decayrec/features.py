"""The decay-weighted user-item matrix, built in DuckDB SQL and kept as a Parquet snapshot.

    w(u, i) = sum over events e of (u, i) with ts_e < T of type_weight(e.type) * K(T - ts_e)

T is the as-of time of the run; ages count from it or from the user's own latest event
(`decay.reference`). The nightly run and every backtest build the matrix with the same
function (:func:`compute_features`) on the events they may see. Every (user, item) pair
with an event before T is in the matrix, even where its weight has decayed to nothing,
so "already seen" never depends on decay.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from decayrec.config import DecayConfig, DecayrecConfig
from decayrec.decay import effective_half_life
from decayrec.sqlfiles import connect, run_script, sql


@dataclass
class Snapshot:
    """Where a run's matrix lives and what it was built from."""

    snapshot_id: str
    path: str
    as_of_time: str
    n_users: int
    n_items: int
    n_nonzero: int
    n_events: int
    has_sequences: bool = False  # each user's recent events (sequences.parquet) are kept


@dataclass
class EventSequences:
    """Each user's most recent events, oldest first, in CSR form (for sequence models):
    the events of user u are [ptr[u], ptr[u + 1]) of `items` / `times`."""

    ptr: np.ndarray  # int64, n_users + 1
    items: np.ndarray  # int64 item_idx
    times: np.ndarray  # float64 epoch seconds
    ref_times: np.ndarray  # float64 epoch seconds per user: when the user is recommended to

    @classmethod
    def from_table(cls, table: pa.Table, n_users: int, ref_default: float) -> EventSequences:
        """From rows (user_idx, item_idx, ts, ref_ts) sorted by user and time."""
        users = table["user_idx"].to_numpy().astype(np.int64)
        ref_times = np.full(n_users, ref_default, dtype=np.float64)
        if len(users):
            ref_times[users] = table["ref_ts"].to_numpy().astype(np.float64)
        return cls(
            ptr=np.searchsorted(users, np.arange(n_users + 1)).astype(np.int64),
            items=table["item_idx"].to_numpy().astype(np.int64),
            times=table["ts"].to_numpy().astype(np.float64),
            ref_times=ref_times,
        )


@dataclass
class InteractionMatrix:
    """A sparse user x item matrix in coordinate form, rows sorted, with its id maps (and,
    for sequence models, each user's recent events).

    `weights` are what models learn from; `score_weights` the rows users are scored with
    (recency-weighted, see DecayConfig.recency_events; None: the weights); `times` the
    epoch seconds of each pair's latest event (None: unknown)."""

    user_ids: np.ndarray  # str, position = user_idx
    item_ids: np.ndarray  # str, position = item_idx
    rows: np.ndarray  # int64
    cols: np.ndarray  # int64
    weights: np.ndarray  # float64
    popularity: np.ndarray  # float64 per item: decayed popularity
    sequences: EventSequences | None = None
    score_weights: np.ndarray | None = None  # float64
    times: np.ndarray | None = None  # float64 epoch seconds

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.user_ids), len(self.item_ids)

    @property
    def row_weights(self) -> np.ndarray:
        """The weights a user's row is scored with."""
        return self.weights if self.score_weights is None else self.score_weights

    def row_pointer(self) -> np.ndarray:
        """CSR row pointer: the entries of user u are [ptr[u], ptr[u + 1])."""
        return np.searchsorted(self.rows, np.arange(self.shape[0] + 1))

    def items_per_user(self) -> np.ndarray:
        return np.diff(self.row_pointer())


def prepare_decay_tables(con: duckdb.DuckDBPyConnection, decay: DecayConfig) -> None:
    """Register type_params and the decay_kernel macro for the feature SQL; an empty
    user_memory unless it exists."""
    con.execute(
        "create or replace temp table type_params "
        "(event_type varchar, weight double, memory double)"
    )
    con.executemany(
        "insert into type_params values (?, ?, ?)",
        [(t, w, decay.type_memory.get(t, 1.0)) for t, w in decay.type_weights.items()],
    )
    con.execute(sql("features/decay_kernel"))
    con.execute(
        "create temp table if not exists user_memory (user_id varchar, memory double, drift double)"
    )


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
    con: duckdb.DuckDBPyConnection,
    decay: DecayConfig,
    as_of: datetime,
    user_memory: pa.Table | None = None,
) -> None:
    """Build the temp tables interactions, user_index, item_index from `source_events`.

    Each user's memory (user_id, memory, drift) comes from `user_memory` when given;
    with `decay.user_decay = 'drift'` it is estimated instead, in two passes: the
    first, with every memory at 1, gives the matrix from which each user's drift is
    measured (decayrec.dynamic); the second applies the memories.
    """
    prepare_decay_tables(con, decay)
    con.execute("delete from user_memory")
    if decay.user_decay == "drift":
        from decayrec.dynamic import estimate_user_memory

        _interactions(con, decay, as_of)
        user_memory = estimate_user_memory(read_matrix(con), con, decay)
    if user_memory is not None:
        con.register("given_memory", user_memory)
        con.execute("insert into user_memory select user_id, memory, drift from given_memory")
        con.unregister("given_memory")
    _interactions(con, decay, as_of)


def _interactions(con: duckdb.DuckDBPyConnection, decay: DecayConfig, as_of: datetime) -> None:
    con.execute(
        "create or replace temp table interactions as " + sql("features/decayed_interactions"),
        {"as_of": as_of, **kernel_parameters(decay)},
    )
    con.execute("create or replace temp table user_index as " + sql("features/user_index"))
    con.execute("create or replace temp table item_index as " + sql("features/item_index"))


def sequence_length(config: DecayrecConfig) -> int:
    """Events per user a snapshot keeps for sequence models (0: none, the model needs none)."""
    return config.model.seq_history if str(config.model.name) in SEQUENCE_MODELS else 0


SEQUENCE_MODELS = ("sasrec",)


def read_sequences(con: duckdb.DuckDBPyConnection, as_of: datetime, max_len: int) -> pa.Table:
    """Each user's last `max_len` events before `as_of` (the temp tables of
    compute_interactions must exist)."""
    return con.sql(
        sql("features/sequences"), params={"as_of": as_of, "max_len": max_len}
    ).to_arrow_table()


def read_matrix(
    con: duckdb.DuckDBPyConnection, as_of: datetime | None = None, sequence_len: int = 0
) -> InteractionMatrix:
    """The interactions temp table as a matrix; with `sequence_len` > 0 also each user's
    last `sequence_len` events before `as_of`."""
    users = con.sql("select user_id from user_index order by user_idx").to_arrow_table()
    items = con.sql("select item_id, popularity from item_index order by item_idx").to_arrow_table()
    coo = con.sql(sql("features/matrix")).to_arrow_table()
    sequences = None
    if sequence_len > 0:
        if as_of is None:
            raise ValueError("read_matrix: sequences need the as-of time")
        sequences = EventSequences.from_table(
            read_sequences(con, as_of, sequence_len), users.num_rows, as_of.timestamp()
        )
    return _matrix(users, items, coo, sequences)


def _matrix(
    users: pa.Table, items: pa.Table, coo: pa.Table, sequences: EventSequences | None
) -> InteractionMatrix:
    """An InteractionMatrix from the Arrow tables of user_index, item_index and matrix.sql
    (snapshots written before score weights and times have neither: None)."""

    def column(name: str) -> np.ndarray | None:
        if name not in coo.column_names:
            return None
        return coo[name].to_numpy().astype(np.float64)

    return InteractionMatrix(
        user_ids=np.asarray(users["user_id"].to_numpy(zero_copy_only=False), dtype=object),
        item_ids=np.asarray(items["item_id"].to_numpy(zero_copy_only=False), dtype=object),
        rows=coo["user_idx"].to_numpy().astype(np.int64),
        cols=coo["item_idx"].to_numpy().astype(np.int64),
        weights=coo["weight"].to_numpy().astype(np.float64),
        popularity=items["popularity"].to_numpy().astype(np.float64),
        sequences=sequences,
        score_weights=column("score_weight"),
        times=column("ts"),
    )


def compute_features(
    con: duckdb.DuckDBPyConnection, config: DecayrecConfig, as_of: datetime
) -> InteractionMatrix:
    """The matrix of the events in the view `source_events` as of `as_of`, exactly as the
    nightly run builds it (the temp tables interactions, user_index and item_index are
    left for the caller). The nightly points source_events at the lake's events; a
    backtest at the events its split may train on."""
    compute_interactions(con, config.decay, as_of)
    return read_matrix(con, as_of, sequence_length(config))


def build_snapshot(config: DecayrecConfig, as_of: datetime) -> Snapshot:
    """Compute the run's matrix from the lake's events and write it as a Parquet snapshot.

    The snapshot id hashes the events before T, T itself and the decay settings, so the
    same data and settings always give the same id (and the same files).
    """
    con = connect(config.lake_path)
    try:
        run_script(con, "lake/schema")
        n_events, content_hash = con.execute(
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
        out = Path(config.data_dir) / "snapshots" / snapshot_id
        meta_path = out / "snapshot.json"
        if meta_path.exists():
            return Snapshot(**json.loads(meta_path.read_text()))
        con.execute("create or replace temp view source_events as select * from events")
        compute_interactions(con, config.decay, as_of)
        out.mkdir(parents=True, exist_ok=True)
        # Written through Arrow so no path is ever pasted into SQL.
        coo = con.sql(sql("features/matrix")).to_arrow_table()
        users = con.sql("from user_index").to_arrow_table()
        items = con.sql("from item_index").to_arrow_table()
        pq.write_table(coo, out / "matrix.parquet")
        pq.write_table(users, out / "users.parquet")
        pq.write_table(items, out / "items.parquet")
        pq.write_table(user_decay_table(con, config.decay), out / "user_decay.parquet")
        if sequence_length(config):
            pq.write_table(
                read_sequences(con, as_of, sequence_length(config)), out / "sequences.parquet"
            )
        snapshot = Snapshot(
            snapshot_id=snapshot_id,
            path=str(out),
            as_of_time=as_of.isoformat(),
            n_users=users.num_rows,
            n_items=items.num_rows,
            n_nonzero=coo.num_rows,
            n_events=n_events,
            has_sequences=bool(sequence_length(config)),
        )
        meta_path.write_text(json.dumps(asdict(snapshot), indent=2))
        return snapshot
    finally:
        con.close()


def user_decay_table(con: duckdb.DuckDBPyConnection, decay: DecayConfig) -> pa.Table:
    """Per user: memory, drift (null where not estimated) and the effective half-life."""
    table = con.sql(
        "select u.user_id, coalesce(m.memory, 1.0) as memory, m.drift "
        "from user_index as u left join user_memory as m on m.user_id = u.user_id "
        "order by u.user_idx"
    ).to_arrow_table()
    memory = table["memory"].to_numpy()
    half_life = np.array([effective_half_life(decay, float(m)) for m in memory])
    return table.append_column("half_life_days", pa.array(half_life, pa.float64()))


def load_snapshot(snapshot: Snapshot) -> InteractionMatrix:
    path = Path(snapshot.path)
    users = pq.read_table(path / "users.parquet", columns=["user_id"])
    items = pq.read_table(path / "items.parquet", columns=["item_id", "popularity"])
    coo = pq.read_table(path / "matrix.parquet")
    sequences = None
    if (path / "sequences.parquet").exists():
        sequences = EventSequences.from_table(
            pq.read_table(path / "sequences.parquet"),
            users.num_rows,
            datetime.fromisoformat(snapshot.as_of_time).timestamp(),
        )
    return _matrix(users, items, coo, sequences)
