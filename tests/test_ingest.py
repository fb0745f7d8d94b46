"""Ingestion and validation of source files into the lake."""

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from decayrec.config import ColumnMapping, DecayrecConfig, SourceConfig
from decayrec.lake.ingest import IngestError, load_batches, stage_sources

BAD_CSV = """user_id,item_id,event_type,event_ts,value
u1,i1,rating,1600000000,4.0
u1,i2,rating,1600000100,9.5
u2,i1,view,4102444800,
u2,i3,view,notatime,
u3,i1,rating,1600000000,4.0,extra
u1,i1,rating,1600000000,4.0
u4,i2,teleport,1600000200,
,i2,view,1600000300,
u5,i4,purchase,1600000400,1
u5,i5,view,1600000500,
u6,i6,view,1600000600,
u6,i7,view,1600000700,
u6,i8,view,1600000800,
u7,i9,view,1600000900,
u7,i1,rating,1600001000,abc
"""


def ingest(config: DecayrecConfig, run_id: str = "run-1"):
    return load_batches(config, stage_sources(config, run_id), run_id)


def lake(config: DecayrecConfig) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(config.lake_path), read_only=True)


def make_config(tmp_path: Path, *sources: SourceConfig, **validation) -> DecayrecConfig:
    return DecayrecConfig(
        data_dir=tmp_path / "data", sources=list(sources), validation=validation or {}
    )


def test_bad_rows_are_quarantined_with_line_and_reason(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(BAD_CSV)
    config = make_config(tmp_path, SourceConfig(path=str(path)), max_bad_row_share=0.6)
    [result] = ingest(config)
    assert result.rows_read == 15
    assert result.rows_quarantined == 8
    assert result.rows_accepted == 7
    assert result.rows_accepted + result.rows_quarantined == result.rows_read
    with lake(config) as con:
        rows = con.execute(
            "select line, field, expectation, reason, raw from quarantine order by line"
        ).fetchall()
        by_line = {r[0]: r[1:] for r in rows}
        assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9, 16]
        assert by_line[3][:2] == ("value", "expect_column_values_to_be_between")
        assert "outside [0.5, 5.0]" in by_line[3][2]
        assert by_line[4][0] == "event_ts" and "future" in by_line[4][2]
        assert by_line[5][1] == "parse" and "notatime" in by_line[5][2]
        assert by_line[6][1] == "parse" and by_line[6][3] == "u3,i1,rating,1600000000,4.0,extra"
        assert by_line[7][1] == "expect_compound_columns_to_be_unique"
        assert by_line[8][1] == "expect_column_values_to_be_in_set" and "teleport" in by_line[8][2]
        assert by_line[9][0] == "user_id"
        assert by_line[16][0] == "value" and "abc" in by_line[16][2]
        # every quarantined row keeps its raw content and lineage
        assert all(r[4] for r in rows)
        assert con.execute("select count(distinct file) from quarantine").fetchall() == [(1,)]
        events = con.execute("select user_id, item_id from events order by all").fetchall()
        assert ("u1", "i1") in events and len(events) == 7
        log = con.execute(
            "select status, rows_read, rows_accepted, rows_quarantined from load_log"
        ).fetchall()
        assert log == [("loaded", 15, 7, 8)]
    report = json.loads(Path(result.validation_path).read_text())
    assert report["bad_by_expectation"]["parse"] == 4
    gx_types = {r["expectation_config"]["type"] for r in report["great_expectations"]["results"]}
    assert "expect_compound_columns_to_be_unique" in gx_types


def test_same_file_twice_and_overlapping_extracts_do_not_double_count(tmp_path):
    first = tmp_path / "day1.csv"
    first.write_text(
        "user_id,item_id,event_type,event_ts\nu1,i1,view,1600000000\nu1,i2,view,1600000001\n"
    )
    config = make_config(tmp_path, SourceConfig(path=str(tmp_path / "*.csv")))
    ingest(config)
    assert ingest(config, "run-2") == []  # the same file again: skipped by checksum
    overlap = tmp_path / "day2.csv"
    overlap.write_text(
        "user_id,item_id,event_type,event_ts\nu1,i2,view,1600000001\nu2,i3,view,1600000002\n"
    )
    [result] = ingest(config, "run-3")
    assert (result.rows_read, result.rows_accepted, result.rows_inserted) == (2, 2, 1)
    with lake(config) as con:
        assert con.execute("select count(*) from events").fetchall() == [(3,)]
        assert con.execute("select count(*) from load_log").fetchall() == [(2,)]


def test_a_changed_value_for_a_loaded_event_key_is_counted_and_the_first_value_kept(
    tmp_path, caplog
):
    header = "user_id,item_id,event_type,event_ts,value\n"
    (tmp_path / "day1.csv").write_text(
        header + "u1,i1,rating,1600000000,4.0\nu1,i2,rating,1600000001,3.0\n"
    )
    config = make_config(tmp_path, SourceConfig(path=str(tmp_path / "*.csv")))
    [first] = ingest(config)
    assert (first.rows_inserted, first.rows_conflicting, first.message) == (2, 0, None)
    (tmp_path / "day2.csv").write_text(
        header + "u1,i2,rating,1600000001,3.0\nu1,i1,rating,1600000000,2.5\n"
        "u2,i3,rating,1600000002,5.0\n"
    )
    with caplog.at_level("WARNING", logger="decayrec.lake.ingest"):
        [second] = ingest(config, "run-2")
    assert (second.rows_read, second.rows_accepted, second.rows_inserted) == (3, 3, 1)
    assert second.rows_quarantined == 0 and second.rows_conflicting == 1
    assert second.message == (
        f"{tmp_path / 'day2.csv'}: 1 rows conflict with loaded events (same user_id, item_id, "
        "event_type and event_ts, another value); the first loaded value is kept. Examples: "
        "line 3: user_id 'u1', item_id 'i1', event_type 'rating', event_ts "
        "2020-09-13T12:26:40+00:00: value 2.5 vs loaded 4.0"
    )
    logged = [r for r in caplog.records if r.name == "decayrec.lake.ingest"]
    assert [(r.levelname, r.getMessage()) for r in logged] == [("WARNING", second.message)]
    from tasks.artifacts import validation_markdown  # the run's nightly-validation artifact

    assert "1 inserted, 0 quarantined, 1 conflicting with loaded events (first value kept)" in (
        validation_markdown([second], config.data_dir)
    )
    with lake(config) as con:
        assert con.execute(
            "select item_id, value from events where user_id = 'u1' order by item_id"
        ).fetchall() == [("i1", 4.0), ("i2", 3.0)]
        assert con.execute(
            "select file, rows_inserted, rows_conflicting, message from load_log order by file"
        ).fetchall() == [
            (str(tmp_path / "day1.csv"), 2, 0, None),
            (str(tmp_path / "day2.csv"), 1, 1, second.message),
        ]


def test_ids_are_stored_exactly_as_given_and_blank_ids_are_missing(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        "user_id,item_id,event_type,event_ts\n"
        ' u1,i1 ,view,1600000000\nu1,i1,view,1600000000\n"  ",i2,view,1600000001\n'
        '"u2 "," i3",view,1600000002\nu3,i4,view,1600000003\nu3,i5,view,1600000004\n'
    )
    config = make_config(tmp_path, SourceConfig(path=str(path)))
    [result] = ingest(config)
    # " u1"/"i1 " and "u1"/"i1" are different keys: no duplicate, both loaded
    assert (result.rows_read, result.rows_inserted, result.rows_quarantined) == (6, 5, 1)
    with lake(config) as con:
        assert con.execute("select user_id, item_id from events order by all").fetchall() == [
            (" u1", "i1 "),
            ("u1", "i1"),
            ("u2 ", " i3"),
            ("u3", "i4"),
            ("u3", "i5"),
        ]
        assert con.execute("select line, field, reason from quarantine").fetchall() == [
            (4, "user_id", "user_id is missing")
        ]


@pytest.mark.parametrize(
    ("raw", "unit"),
    [
        ("1600000000", "s"),
        ("1600000000000", "ms"),
        ("1600000000000000", "us"),
        ("2020-09-13T12:26:40Z", "iso"),
    ],
)
def test_timestamp_unit_is_detected_per_column(tmp_path, raw, unit):
    path = tmp_path / "e.csv"
    path.write_text(f"user_id,item_id,event_type,event_ts\nu1,i1,view,{raw}\nu2,i1,view,{raw}\n")
    [result] = ingest(make_config(tmp_path, SourceConfig(path=str(path))))
    assert result.timestamp_unit == unit
    with lake(make_config(tmp_path)) as con:
        [(ts,)] = con.execute("select distinct epoch(event_ts) from events").fetchall()
    assert ts == 1600000000


def test_jsonl_and_parquet_sources_with_a_column_mapping(tmp_path):
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text(
        '{"uid": 1, "sku": "a", "kind": "view", "t": 1600000000}\n'
        "this is not json\n"
        '{"uid": 2, "sku": "b", "kind": "purchase", "t": 1600000100, "qty": 2}\n'
    )
    mapping = ColumnMapping(
        user_id="uid", item_id="sku", event_type="kind", event_ts="t", value="qty"
    )
    parquet = tmp_path / "e.parquet"
    pq.write_table(
        pa.table({"uid": [3], "sku": ["c"], "kind": ["view"], "t": [1600000200], "qty": [None]}),
        parquet,
    )
    config = make_config(
        tmp_path,
        SourceConfig(path=str(jsonl), columns=mapping),
        SourceConfig(path=str(parquet), columns=mapping),
        max_bad_row_share=0.5,
    )
    results = ingest(config)
    assert [(r.rows_read, r.rows_accepted) for r in results] == [(3, 2), (1, 1)]
    with lake(config) as con:
        assert con.execute("select user_id, item_id, value from events order by 1").fetchall() == [
            ("1", "a", None),
            ("2", "b", 2.0),
            ("3", "c", None),
        ]
        assert con.execute("select line, raw from quarantine").fetchall() == [
            (2, "this is not json")
        ]


def test_empty_file_fails_with_a_clear_message(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("user_id,item_id,event_type,event_ts\n")
    with pytest.raises(IngestError, match=r"empty\.csv: empty batch"):
        ingest(make_config(tmp_path, SourceConfig(path=str(path))))


def test_missing_column_fails_naming_file_and_column(tmp_path):
    path = tmp_path / "nocol.csv"
    path.write_text("user_id,event_type,event_ts\nu1,view,1600000000\n")
    with pytest.raises(IngestError, match=r"nocol\.csv: missing column\(s\) item_id"):
        ingest(make_config(tmp_path, SourceConfig(path=str(path))))


def test_too_many_bad_rows_fail_the_batch_and_load_nothing(tmp_path):
    path = tmp_path / "mostly_bad.csv"
    path.write_text(BAD_CSV)
    config = make_config(tmp_path, SourceConfig(path=str(path)), max_bad_row_share=0.2)
    with pytest.raises(IngestError) as info:
        ingest(config)
    message = str(info.value)
    assert "mostly_bad.csv" in message and "53.3% of 15 rows are bad" in message
    assert "expect_column_values_to_be_between" in message and "line 3" in message
    with lake(config) as con:
        assert con.execute("select count(*) from events").fetchall() == [(0,)]
        assert con.execute("select count(*) from quarantine").fetchall() == [(0,)]
        assert con.execute("select status from load_log").fetchall() == [("failed",)]
    # the file is retried on the next run (it was not recorded as loaded)
    config.validation.max_bad_row_share = 0.6
    assert ingest(config, "run-2")[0].rows_accepted == 7


def test_identifiers_from_configuration_are_checked():
    with pytest.raises(ValueError, match="not an allowed column name"):
        ColumnMapping(user_id='user"; drop table events; --')
    with pytest.raises(ValueError, match="event type"):
        DecayrecConfig(validation={"event_types": ["view'; --"]})


def test_odd_header_names_in_a_file_are_quoted_not_rejected(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text('user,"item ""id""",when,note; drop table events\nu1,i1,1600000000,x\n')
    mapping = ColumnMapping(user_id="user", item_id="item_id", event_ts="when", value=None)
    source = SourceConfig(path=str(path), columns=mapping, event_type="view")
    with pytest.raises(IngestError, match="missing column"):
        ingest(make_config(tmp_path, source))
    ok = SourceConfig(
        path=str(path),
        columns=ColumnMapping(
            user_id="user", item_id="user", event_ts="when", event_type=None, value=None
        ),
        event_type="view",
    )
    [result] = ingest(make_config(tmp_path / "ok", ok))
    assert result.rows_accepted == 1
