"""Parquet sources at scale: rows are numbered as in the file, no raw copy of every row is
staged, and a quarantined row still keeps its raw content (read back from the file)."""

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from decayrec.config import DecayrecConfig, SourceConfig, ValidationConfig
from decayrec.lake.ingest import load_batches, stage_sources


def _events(n: int) -> pa.Table:
    ts = [datetime(2024, 1, 1, tzinfo=UTC).timestamp() + 60 * i for i in range(n)]
    return pa.table(
        {
            "user_id": [f"u{i % 50}" for i in range(n)],
            "item_id": [f"i{i % 7}" for i in range(n)],
            "event_type": ["view"] * n,
            "event_ts": pa.array([int(t * 1e6) for t in ts], pa.timestamp("us", tz="UTC")),
            "value": pa.array([None] * n, pa.float64()),
            "extra": [f"x{i}" for i in range(n)],
        }
    )


def test_parquet_bad_rows_keep_their_file_row_and_raw_columns(tmp_path):
    table = _events(40)
    rows = table.to_pylist()
    rows[5]["event_type"] = "teleport"  # not a configured type
    rows[9] = dict(rows[3])  # a repeated key: the second occurrence is bad
    path = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    config = DecayrecConfig(data_dir=tmp_path / "data", sources=[SourceConfig(path=str(path))])

    [batch] = stage_sources(config, "run-1")
    assert batch.raw_from_file and batch.timestamp_unit == "iso"  # typed: no value profile
    with duckdb.connect(str(config.lake_path), read_only=True) as con:
        staged = con.execute(
            "select count(*), count(raw), min(row_number), max(row_number) from staged_rows"
        ).fetchall()
    assert staged == [(40, 0, 1, 40)]

    [result] = load_batches(config, [batch], "run-1")
    assert (result.rows_read, result.rows_quarantined, result.rows_inserted) == (40, 2, 38)
    with duckdb.connect(str(config.lake_path), read_only=True) as con:
        quarantined = con.execute(
            "select row_number, expectation, raw from quarantine order by row_number"
        ).fetchall()
        assert con.execute("select count(*) from staged_rows").fetchall() == [(0,)]
    assert [(r[0], r[1]) for r in quarantined] == [
        (6, "expect_column_values_to_be_in_set"),
        (10, "expect_compound_columns_to_be_unique"),
    ]
    raw6, raw10 = (json.loads(r[2]) for r in quarantined)
    assert raw6["event_type"] == "teleport" and raw6["extra"] == "x5"
    assert raw10["user_id"] == rows[3]["user_id"] and raw10["extra"] == "x3"
    report = json.loads(Path(result.validation_path).read_text())
    assert report["gx_rows_validated"] == 40 and report["gx_sampled"] is False


def test_a_batch_larger_than_the_gx_limit_is_judged_on_a_sample(tmp_path):
    gx_max_rows = 3_000
    n = gx_max_rows + 5_000
    path = tmp_path / "big.parquet"
    pq.write_table(_events(n), path)
    config = DecayrecConfig(
        data_dir=tmp_path / "data",
        sources=[SourceConfig(path=str(path))],
        validation=ValidationConfig(gx_max_rows=gx_max_rows),
    )
    [result] = load_batches(config, stage_sources(config, "r"), "r")
    assert result.rows_inserted == n and result.rows_quarantined == 0
    report = json.loads(Path(result.validation_path).read_text())
    assert report["gx_sampled"] is True and report["gx_rows_validated"] == gx_max_rows
    assert report["success"] is True
