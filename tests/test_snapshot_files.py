"""Snapshots on disk: the path in snapshot.json is relative to the data dir (a moved or
copied data dir reads its own files), a reused snapshot is checked against its SHA-256
checksums and rebuilt when a file changed or went missing, and a loaded matrix must hold
finite weights."""

import json
import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from decayrec.config import DecayrecConfig, EvaluationConfig, SourceConfig
from decayrec.lake.features import build_snapshot
from decayrec.lake.ingest import load_batches, stage_sources
from decayrec.lake.matrix import SnapshotError, load_snapshot, read_snapshot
from decayrec.lake.staging import sha256_of as file_sha256

AS_OF = datetime(2024, 4, 1, tzinfo=UTC)


def make_lake(root: Path) -> DecayrecConfig:
    """A lake of 40 users x 6 events among 30 items, in root/data (the events file
    outside it)."""
    rng = np.random.default_rng(3)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    lines = ["user_id,item_id,event_type,event_ts,value"]
    for u in range(40):
        for i in rng.choice(30, size=6, replace=False):
            ts = start + timedelta(days=float(rng.uniform(0, 90)))
            lines.append(f"u{u},i{i},click,{ts.isoformat()},")
    events = root / "events.csv"
    events.write_text("\n".join(lines) + "\n")
    config = DecayrecConfig(
        data_dir=root / "data",
        sources=[SourceConfig(path=str(events), format="csv")],
        evaluation=EvaluationConfig(protocols=["user_time"]),
        use_tuned=False,
    )
    load_batches(config, stage_sources(config, "snap"), "snap")
    return config


def assert_same_matrix(a, b) -> None:
    """The same ids and entries; the same weights up to the last bits of a float sum
    (DuckDB's parallel sums do not always add in the same order)."""
    assert list(a.user_ids) == list(b.user_ids) and list(a.item_ids) == list(b.item_ids)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.cols, b.cols)
    for name in ("weights", "popularity", "score_weights", "times"):
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None) == (right is None), name
        if left is not None:
            np.testing.assert_allclose(left, right, rtol=1e-12, atol=0, err_msg=name)


def test_snapshot_json_holds_a_relative_path_and_checksums(tmp_path):
    config = make_lake(tmp_path)
    snapshot = build_snapshot(config, AS_OF)
    directory = config.data_dir / "snapshots" / snapshot.snapshot_id
    assert Path(snapshot.path) == directory
    stored = json.loads((directory / "snapshot.json").read_text())
    assert stored["path"] == f"snapshots/{snapshot.snapshot_id}"
    assert set(stored["files"]) == {
        "matrix.parquet",
        "users.parquet",
        "items.parquet",
        "user_decay.parquet",
    }
    for name, digest in stored["files"].items():
        assert file_sha256(directory / name) == digest


def test_a_moved_data_dir_reuses_its_snapshot_in_the_new_place(tmp_path, caplog):
    config = make_lake(tmp_path)
    first = build_snapshot(config, AS_OF)
    original = load_snapshot(first)
    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    shutil.move(config.data_dir, moved)
    assert not config.data_dir.exists()
    config_moved = config.model_copy(update={"data_dir": moved})
    matrix_file = moved / "snapshots" / first.snapshot_id / "matrix.parquet"
    written = matrix_file.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="decayrec.lake.features"):
        again = build_snapshot(config_moved, AS_OF)
    assert again.snapshot_id == first.snapshot_id
    assert Path(again.path) == moved / "snapshots" / first.snapshot_id
    assert Path(again.path).is_relative_to(moved)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert matrix_file.stat().st_mtime_ns == written  # reused
    assert_same_matrix(load_snapshot(again), original)


def test_an_old_absolute_path_is_re_derived_under_the_current_data_dir(tmp_path):
    config = make_lake(tmp_path)
    first = build_snapshot(config, AS_OF)
    copy = tmp_path / "copy"
    shutil.copytree(config.data_dir, copy)
    meta = copy / "snapshots" / first.snapshot_id / "snapshot.json"
    stored = json.loads(meta.read_text())
    stored["path"] = str(config.data_dir / "snapshots" / first.snapshot_id)  # old style
    meta.write_text(json.dumps(stored))
    assert Path(read_snapshot(meta, copy).path) == copy / "snapshots" / first.snapshot_id
    stored["path"] = "../../somewhere/else"
    meta.write_text(json.dumps(stored))
    assert Path(read_snapshot(meta, copy).path) == copy / "snapshots" / first.snapshot_id
    # the original is gone: the copy's run reads only its own files
    shutil.rmtree(config.data_dir)
    snapshot = build_snapshot(config.model_copy(update={"data_dir": copy}), AS_OF)
    assert Path(snapshot.path) == copy / "snapshots" / first.snapshot_id
    assert load_snapshot(snapshot).shape == (40, first.n_items)


def test_a_corrupted_matrix_file_is_detected_and_the_snapshot_rebuilt(tmp_path, caplog):
    config = make_lake(tmp_path)
    first = build_snapshot(config, AS_OF)
    original = load_snapshot(first)
    matrix_file = Path(first.path) / "matrix.parquet"
    data = bytearray(matrix_file.read_bytes())
    assert len(data) > 4000
    middle = len(data) // 2 - 1000
    data[middle : middle + 2000] = (
        np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    )
    matrix_file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="decayrec.lake.features"):
        again = build_snapshot(config, AS_OF)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "decayrec.lake.features"]
    assert str(matrix_file) in warning and "checksum" in warning
    assert again.snapshot_id == first.snapshot_id and again.path == first.path
    assert file_sha256(matrix_file) == again.files["matrix.parquet"]
    assert_same_matrix(load_snapshot(again), original)


def test_a_missing_snapshot_file_is_rebuilt(tmp_path, caplog):
    config = make_lake(tmp_path)
    first = build_snapshot(config, AS_OF)
    original = load_snapshot(first)
    (Path(first.path) / "users.parquet").unlink()
    with caplog.at_level(logging.WARNING, logger="decayrec.lake.features"):
        again = build_snapshot(config, AS_OF)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "decayrec.lake.features"]
    assert str(Path(first.path) / "users.parquet") in warning and "missing" in warning
    assert_same_matrix(load_snapshot(again), original)


@pytest.mark.parametrize(
    ("file", "column", "value"),
    [
        ("matrix.parquet", "weight", float("nan")),
        ("matrix.parquet", "score_weight", float("inf")),
        ("items.parquet", "popularity", float("-inf")),
    ],
)
def test_weights_that_are_not_finite_raise_an_error_naming_the_file(tmp_path, file, column, value):
    config = make_lake(tmp_path)
    snapshot = build_snapshot(config, AS_OF)
    path = Path(snapshot.path) / file
    table = pq.read_table(path)
    values = table[column].to_numpy().copy()
    values[len(values) // 2] = value
    index = table.column_names.index(column)
    pq.write_table(table.set_column(index, column, pa.array(values, pa.float64())), path)
    with pytest.raises(SnapshotError) as info:
        load_snapshot(snapshot)
    message = str(info.value)
    assert str(path) in message and column in message and "\n" not in message


def test_an_unreadable_snapshot_file_raises_an_error_naming_it(tmp_path):
    config = make_lake(tmp_path)
    snapshot = build_snapshot(config, AS_OF)
    path = Path(snapshot.path) / "items.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(SnapshotError) as info:
        load_snapshot(snapshot)
    assert str(path) in str(info.value)


def test_the_cached_features_task_checks_its_snapshot_and_follows_the_data_dir(
    tmp_path, prefect_harness
):
    """Through the nightly's features task (Prefect cache): a cached snapshot whose matrix
    changed on disk is rebuilt, and a moved data dir gets its own snapshot path."""
    from tasks.features import cached_features

    config = make_lake(tmp_path)
    first = cached_features(config, AS_OF)
    assert Path(first.path) == config.data_dir / "snapshots" / first.snapshot_id
    original = load_snapshot(first)
    matrix_file = Path(first.path) / "matrix.parquet"
    data = bytearray(matrix_file.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 2000] = bytes(2000)
    matrix_file.write_bytes(bytes(data))
    again = cached_features(config, AS_OF)
    assert file_sha256(matrix_file) == again.files["matrix.parquet"]
    assert_same_matrix(load_snapshot(again), original)

    moved = tmp_path / "moved"
    shutil.move(config.data_dir, moved)
    elsewhere = cached_features(config.model_copy(update={"data_dir": moved}), AS_OF)
    assert Path(elsewhere.path) == moved / "snapshots" / first.snapshot_id
    assert_same_matrix(load_snapshot(elsewhere), original)
