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
from decayrec.lake.validate import audit_deferred


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


def test_a_large_clean_batch_is_loaded_on_the_sql_checks_and_judged_by_gx_after(tmp_path):
    """At validation.gx_defer_min_rows or more parsed rows and no bad row, GX does not run
    before the load: its sample is kept, and audit_deferred judges it afterwards."""
    n = 6_000
    clean, dirty = tmp_path / "clean.parquet", tmp_path / "dirty.parquet"
    pq.write_table(_events(n), clean)
    rows = _events(n).to_pylist()
    rows[17]["event_type"] = "teleport"
    pq.write_table(pa.Table.from_pylist(rows, schema=_events(1).schema), dirty)
    config = DecayrecConfig(
        data_dir=tmp_path / "data",
        sources=[SourceConfig(path=str(clean)), SourceConfig(path=str(dirty))],
        validation=ValidationConfig(gx_max_rows=2_000, gx_defer_min_rows=5_000),
    )
    by_file = {Path(r.file).name: r for r in load_batches(config, stage_sources(config, "r"), "r")}
    assert by_file["clean.parquet"].rows_inserted == n
    assert by_file["dirty.parquet"].rows_quarantined == 1
    deferred = json.loads(Path(by_file["clean.parquet"].validation_path).read_text())
    inline = json.loads(Path(by_file["dirty.parquet"].validation_path).read_text())
    assert inline["great_expectations"]["results"]
    assert "deferred" not in inline["great_expectations"]
    gx = deferred["great_expectations"]
    assert gx["deferred"] is True and gx["results"] == []
    sample = Path(gx["sample"])
    assert pq.read_metadata(sample).num_rows == 2_000  # the sample GX would have judged

    audit = audit_deferred(config)
    assert (audit.batches, audit.success, audit.failed) == (1, True, [])
    judged = json.loads(Path(by_file["clean.parquet"].validation_path).read_text())
    assert judged["gx_deferred"] is True and "gx_audited_at" in judged
    assert judged["great_expectations"]["success"] is True
    types = {r["expectation_config"]["type"] for r in judged["great_expectations"]["results"]}
    assert "expect_compound_columns_to_be_unique" in types
    assert not sample.exists()
    assert audit_deferred(config).batches == 0  # judged once


def test_the_gx_audit_reports_a_sample_the_rules_reject(tmp_path):
    """Should GX and the SQL checks ever disagree, the audit names the file and the
    expectation (the batch stays loaded: the lists were published on the SQL verdict)."""
    path = tmp_path / "events.parquet"
    pq.write_table(_events(300), path)
    config = DecayrecConfig(
        data_dir=tmp_path / "data",
        sources=[SourceConfig(path=str(path))],
        validation=ValidationConfig(gx_defer_min_rows=100, max_bad_row_share=0.0),
    )
    [result] = load_batches(config, stage_sources(config, "r"), "r")
    report = json.loads(Path(result.validation_path).read_text())
    sample = Path(report["great_expectations"]["sample"])
    frame = pq.read_table(sample).to_pandas()
    frame.loc[3, "event_type"] = "teleport"  # as if the SQL checks had let it through
    frame.to_parquet(sample)
    audit = audit_deferred(config)
    assert audit.batches == 1 and not audit.success
    [message] = audit.failed
    assert "events.parquet" in message and "expect_column_values_to_be_in_set" in message
