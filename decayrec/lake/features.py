"""The decay-weighted user-item matrix, built in DuckDB SQL and kept as a Parquet snapshot.

    w(u, i) = sum over events e of (u, i) with ts_e < T of type_weight(e.type) * K(T - ts_e)

T is the as-of time of the run; ages count from it or from the user's own latest event
(`decay.reference`). The nightly run and every backtest build the matrix with the same
function (:func:`compute_features`) on the events they may see. Every (user, item) pair
with an event before T is in the matrix, even where its weight has decayed to nothing,
so "already seen" never depends on decay.

A snapshot lives in `<data_dir>/snapshots/<snapshot_id>/`; its `snapshot.json` holds the
path relative to the data dir and the SHA-256 of each Parquet file. A Snapshot read back
always points into the current configuration's data dir (a moved or copied data dir
reads its own files), a reused snapshot is checked against its checksums (rebuilt when
a file is missing or changed), and a loaded matrix must have finite weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from decayrec.config import DecayConfig, DecayrecConfig
from decayrec.lake.decay import effective_half_life
from decayrec.sqlfiles import connect, run_script, sql

log = logging.getLogger(__name__)

SNAPSHOTS = "snapshots"
SNAPSHOT_META = "snapshot.json"
SNAPSHOT_FILES = ("matrix.parquet", "users.parquet", "items.parquet", "user_decay.parquet")
SEQUENCES_FILE = "sequences.parquet"


class SnapshotError(ValueError):
    """A snapshot whose files cannot be read or hold weights that are not finite."""


@dataclass
class Snapshot:
    """Where a run's matrix lives and what it was built from. `path` is the snapshot's
    directory under the data dir in use (snapshot.json stores it relative to the data
    dir); `files` the SHA-256 of each of its Parquet files."""

    snapshot_id: str
    path: str
    as_of_time: str
    n_users: int
    n_items: int
    n_nonzero: int
    n_events: int
    has_sequences: bool = False  # each user's recent events (sequences.parquet) are kept
    files: dict[str, str] = field(default_factory=dict)

    def under(self, data_dir: str | Path) -> Snapshot:
        """This snapshot in `data_dir` (its directory re-derived from the id)."""
        return replace(self, path=str(snapshot_dir(data_dir, self.snapshot_id)))


def snapshot_dir(data_dir: str | Path, snapshot_id: str) -> Path:
    """`<data_dir>/snapshots/<snapshot_id>` (the id checked: a plain name)."""
    if not snapshot_id or Path(snapshot_id).name != snapshot_id or snapshot_id in (".", ".."):
        raise SnapshotError(f"snapshot id {snapshot_id!r} is not a plain directory name")
    return Path(data_dir) / SNAPSHOTS / snapshot_id


def read_snapshot(meta_path: str | Path, data_dir: str | Path) -> Snapshot:
    """The Snapshot of a snapshot.json, pointing into `data_dir`: the stored path, relative
    to the data dir, is resolved against it; an absolute one (snapshots written before
    relative paths) is re-derived from the snapshot id, never followed."""
    meta_path = Path(meta_path)
    try:
        meta = json.loads(meta_path.read_text())
        snapshot = Snapshot(**meta)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise SnapshotError(
            f"snapshot file {meta_path} cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    stored = Path(snapshot.path)
    if stored.is_absolute() or ".." in stored.parts:
        return snapshot.under(data_dir)
    return replace(snapshot, path=str(Path(data_dir) / stored))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot_problem(snapshot: Snapshot) -> str | None:
    """Why a stored snapshot cannot be reused (a file missing or not matching its
    checksum; no checksums: written before they were kept), or None."""
    if not snapshot.files:
        return f"{Path(snapshot.path) / SNAPSHOT_META} holds no checksums (an older snapshot)"
    needed = set(SNAPSHOT_FILES) | ({SEQUENCES_FILE} if snapshot.has_sequences else set())
    for name in sorted(needed | set(snapshot.files)):
        path = Path(snapshot.path) / name
        if name not in snapshot.files or Path(name).name != name:
            return f"{Path(snapshot.path) / SNAPSHOT_META} has no checksum for {name}"
        if not path.is_file():
            return f"{path} is missing"
        if file_sha256(path) != snapshot.files[name]:
            return f"{path} does not match its SHA-256 checksum"
    return None


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
    measured (decayrec.lake.dynamic); the second applies the memories.
    """
    prepare_decay_tables(con, decay)
    con.execute("delete from user_memory")
    if decay.user_decay == "drift":
        from decayrec.lake.dynamic import estimate_user_memory

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
    return config.model.sequence_events


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
        con.execute("create or replace temp view source_events as select * from events")
        compute_interactions(con, config.decay, as_of)
        out.mkdir(parents=True, exist_ok=True)
        # Written through Arrow so no path is ever pasted into SQL.
        coo = con.sql(sql("features/matrix")).to_arrow_table()
        users = con.sql("from user_index").to_arrow_table()
        items = con.sql("from item_index").to_arrow_table()
        tables = {
            "matrix.parquet": coo,
            "users.parquet": users,
            "items.parquet": items,
            "user_decay.parquet": user_decay_table(con, config.decay),
        }
        if sequence_length(config):
            tables[SEQUENCES_FILE] = read_sequences(con, as_of, sequence_length(config))
        else:
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
            files={name: file_sha256(out / name) for name in tables},
        )
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(snapshot), indent=2))
        tmp.replace(meta_path)  # atomic: snapshot.json is there only when complete
        return snapshot.under(config.data_dir)
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
    """The matrix of a snapshot; a file that cannot be read, or weights, score weights or
    popularity that are not finite, raise SnapshotError naming the file."""
    path = Path(snapshot.path)

    def read(name: str, columns: list[str] | None = None) -> pa.Table:
        try:
            return pq.read_table(path / name, columns=columns)
        except Exception as exc:
            why = f"cannot be read ({type(exc).__name__}: {exc})"
            raise SnapshotError(_snapshot_message(path / name, why)) from None

    users = read("users.parquet", ["user_id"])
    items = read("items.parquet", ["item_id", "popularity"])
    coo = read("matrix.parquet")
    sequences = None
    if (path / SEQUENCES_FILE).exists():
        sequences = EventSequences.from_table(
            read(SEQUENCES_FILE),
            users.num_rows,
            datetime.fromisoformat(snapshot.as_of_time).timestamp(),
        )
    matrix = _matrix(users, items, coo, sequences)
    checks = [
        ("matrix.parquet", "weight", matrix.weights),
        ("matrix.parquet", "score_weight", matrix.score_weights),
        ("items.parquet", "popularity", matrix.popularity),
    ]
    for name, column, values in checks:
        if values is None:
            continue
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            why = f"holds {bad} {column} values that are not finite (NaN or infinite)"
            raise SnapshotError(_snapshot_message(path / name, why))
    return matrix


def _snapshot_message(path: Path, why: str) -> str:
    text = (
        f"snapshot file {path} {why}. Delete the snapshot directory {path.parent} and "
        "run again: the snapshot is rebuilt from the lake."
    )
    return " ".join(text.split())


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


def _sources_without_files(config: DecayrecConfig) -> list[str]:
    from decayrec.lake.ingest import IngestError, source_files

    unmatched = []
    for source in config.sources:
        try:
            if not source_files(source):
                unmatched.append(source.path)
        except IngestError:  # a missing plain path
            unmatched.append(source.path)
    return unmatched
