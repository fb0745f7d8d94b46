"""The user-item matrix as data: :class:`InteractionMatrix` (with each user's recent events,
:class:`EventSequences`, for sequence models) and the Parquet snapshot it is kept in
(:class:`Snapshot`), read back by :func:`load_snapshot`.

A snapshot lives in `<data_dir>/snapshots/<snapshot_id>/`; its `snapshot.json` holds the
path relative to the data dir and the SHA-256 of each Parquet file. A Snapshot read back
always points into the current configuration's data dir (a moved or copied data dir
reads its own files), a reused snapshot is checked against its checksums (rebuilt when
a file is missing or changed), and a loaded matrix must have finite weights. The matrix
is built by decayrec.lake.features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from decayrec.lake.staging import sha256_of

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
        if sha256_of(path) != snapshot.files[name]:
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


def assemble_matrix(
    users: pa.Table,
    items: pa.Table,
    coo: pa.Table,
    sequences: pa.Table | None = None,
    as_of: datetime | None = None,
) -> InteractionMatrix:
    """An InteractionMatrix from the Arrow tables of user_index (user_id), item_index
    (item_id, popularity) and sql/features/matrix.sql (snapshots written before score
    weights and times have neither: None); `sequences`, rows (user_idx, item_idx, ts,
    ref_ts) of sql/features/sequences.sql, with the as-of time users default to."""

    def column(name: str) -> np.ndarray | None:
        if name not in coo.column_names:
            return None
        return coo[name].to_numpy().astype(np.float64)

    events = None
    if sequences is not None:
        if as_of is None:
            raise ValueError("assemble_matrix: sequences need the as-of time")
        events = EventSequences.from_table(sequences, users.num_rows, as_of.timestamp())
    return InteractionMatrix(
        user_ids=np.asarray(users["user_id"].to_numpy(zero_copy_only=False), dtype=object),
        item_ids=np.asarray(items["item_id"].to_numpy(zero_copy_only=False), dtype=object),
        rows=coo["user_idx"].to_numpy().astype(np.int64),
        cols=coo["item_idx"].to_numpy().astype(np.int64),
        weights=coo["weight"].to_numpy().astype(np.float64),
        popularity=items["popularity"].to_numpy().astype(np.float64),
        sequences=events,
        score_weights=column("score_weight"),
        times=column("ts"),
    )


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
    sequences = read(SEQUENCES_FILE) if (path / SEQUENCES_FILE).exists() else None
    as_of = datetime.fromisoformat(snapshot.as_of_time)
    matrix = assemble_matrix(users, items, coo, sequences, as_of)
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
