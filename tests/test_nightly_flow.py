"""The nightly flow end to end on MovieLens-small, through real Prefect flow runs."""

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from decayrec.config import SourceConfig
from flows.nightly import nightly

AS_OF = date(2018, 10, 1)
TABLES = ["recommendations", "recommendations_latest"]
LAKE_TABLES = ["events", "quarantine", "load_log"]


def dump(path, tables):
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f"select * from {t} order by all").fetchall() for t in tables}


@pytest.fixture(scope="module")
def first_run(movielens_nightly):
    """The first run of the day (conftest: shared with test_warehouse_flow) and the tables
    after it; nothing else writes to its data directory before this module."""
    config, warehouse, first = movielens_nightly
    return config, warehouse, first, dump(warehouse, TABLES) | dump(config.lake_path, LAKE_TABLES)


@pytest.fixture(scope="module")
def runs(first_run):
    """The first run, then a rerun of the same day (its own fixture: each costs ~20 s)."""
    config, warehouse, first, after_first = first_run
    second = nightly(as_of=AS_OF, config=config)
    after_second = dump(warehouse, TABLES) | dump(config.lake_path, LAKE_TABLES)
    return config, warehouse, first, second, after_first, after_second


def test_every_user_gets_k_distinct_unseen_items(first_run):
    config, warehouse, first, _ = first_run
    assert first["status"] == "succeeded" and first["published"] is True
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("attach ? as lake (read_only)", [str(config.lake_path)])
        per_user = con.execute(
            "select count(*), count(distinct item_id), min(rank), max(rank) "
            "from recommendations_latest group by user_id"
        ).fetchall()
        assert len(per_user) == 610
        assert set(per_user) == {(10, 10, 1, 10)}
        seen = con.execute(
            "select count(*) from recommendations_latest as r join lake.events as e "
            "on e.user_id = r.user_id and e.item_id = r.item_id"
        ).fetchall()[0][0]
        assert seen == 0
        assert con.execute("select distinct as_of_date from recommendations_latest").fetchall() == [
            (AS_OF,)
        ]
        keys = con.execute(
            "select count(*), count(distinct (as_of_date, user_id, rank)) from recommendations"
        ).fetchall()[0]
        assert keys[0] == keys[1] == 6100


def test_run_history_holds_metrics_for_both_protocols(first_run):
    _, warehouse, first, _ = first_run
    with duckdb.connect(str(warehouse), read_only=True) as con:
        status, metrics, n_rows, stages = con.execute(
            "select status, metrics, n_rows, stage_seconds from recommendation_runs "
            "where run_id = ?",
            [first["run_id"]],
        ).fetchall()[0]
    metrics = json.loads(metrics)
    assert status == "succeeded" and n_rows == 6100
    user_time = metrics["user_time"]
    assert user_time["n_eval_users"] == 608
    assert user_time["model"]["ndcg@10"] > user_time["popularity"]["ndcg@10"]
    for name in ("ndcg@10", "recall@10", "map@10", "hitrate@10", "coverage@10", "ndcg@20"):
        assert 0 < user_time["model"][name] <= 1
    assert metrics["global_time"]["n_eval_users"] > 0
    decay = metrics["decay"]
    assert decay["kernel"] == "exponential" and decay["tune_id"] is None
    # the event types MovieLens has, over the ages its events have (back to 1996)
    assert decay["event_types"] == ["rating", "tag"]
    assert decay["oldest_age_days"] == pytest.approx((AS_OF - date(1996, 3, 29)).days, abs=1)
    assert "half-life 365 days" in decay["title"]
    # per-user decay is off: a note, not a histogram of one bar
    assert [Path(p).name for p in decay["plots"]] == ["decay_curves.png"]
    assert "per-user decay off" in decay["user_half_life_note"]
    header = Path(decay["plots"][0]).read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(header[16:20]) >= 1200
    assert decay["user_half_life_days"]["median"] == 365.0
    assert set(json.loads(stages)) >= {
        "ingest",
        "validate",
        "features",
        "train",
        "evaluate",
        "export",
    }


def test_second_run_of_the_same_day_leaves_identical_tables(runs):
    _, warehouse, first, second, after_first, after_second = runs
    assert second["status"] == "succeeded"
    assert second["published"] is False  # identical lists were already live
    assert after_first == after_second
    with duckdb.connect(str(warehouse), read_only=True) as con:
        runs_rows = con.execute("select status from recommendation_runs").fetchall()
    assert runs_rows == [("succeeded",), ("succeeded",)]


def test_gate_decision_is_in_the_run_record_and_the_registry(runs):
    config, warehouse, first, second, *_ = runs
    with duckdb.connect(str(warehouse), read_only=True) as con:
        metrics = dict(con.execute("select run_id, metrics from recommendation_runs").fetchall())
    gate_1 = json.loads(metrics[first["run_id"]])["gate"]
    gate_2 = json.loads(metrics[second["run_id"]])["gate"]
    assert gate_1["decision"] == "promote" and gate_1["reason"] == "no champion yet"
    # the same configuration on the same data: not worse, promoted
    assert gate_2["decision"] == "promote" and gate_2["champion_id"] == first["run_id"]
    assert gate_2["challenger"] == gate_2["champion"] == gate_1["challenger"]
    champion = json.loads((Path(config.data_dir) / "models" / "champion.json").read_text())
    assert champion["model_id"] == second["run_id"]
    meta = json.loads(
        (Path(config.data_dir) / "models" / first["run_id"] / "meta.json").read_text()
    )
    assert meta["name"] == "ease" and meta["snapshot_id"]


def test_bad_source_fails_the_run_and_keeps_the_published_lists(runs, tmp_path):
    config, warehouse, *_ = runs
    before = dump(warehouse, TABLES)
    empty = tmp_path / "late_delivery.csv"
    empty.write_text("user_id,item_id,event_type,event_ts\n")
    broken = config.model_copy(update={"sources": [*config.sources, SourceConfig(path=str(empty))]})
    with pytest.raises(Exception, match="late_delivery.csv: empty batch"):
        nightly(as_of=date(2018, 10, 2), config=broken)
    assert dump(warehouse, TABLES) == before
    with duckdb.connect(str(warehouse), read_only=True) as con:
        failed = con.execute(
            "select as_of_date, failed_task, error from recommendation_runs where status = 'failed'"
        ).fetchall()
    assert len(failed) == 1
    assert failed[0][:2] == (date(2018, 10, 2), "ingest")
    assert "late_delivery.csv" in failed[0][2]


def test_the_run_records_its_per_user_decay(runs):
    _, warehouse, first, *_ = runs
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select count(*), min(memory), max(memory), min(half_life_days), "
            "max(half_life_days) from user_decay_params where run_id = ?",
            [first["run_id"]],
        ).fetchall()
    assert rows == [(610, 1.0, 1.0, 365.0, 365.0)]
