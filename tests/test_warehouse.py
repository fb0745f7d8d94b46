"""The DuckDB warehouse: atomic, idempotent publish and the run history."""

from datetime import date

import duckdb
import pyarrow as pa
import pytest

from decayrec.warehouse import RunOutcome, WarehouseError, open_warehouse


def lists(users, items, source="model"):
    rows = [(u, r + 1, it, 1.0 / (r + 1)) for u in users for r, it in enumerate(items)]
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "rank": pa.array([r[1] for r in rows], pa.int32()),
            "item_id": [r[2] for r in rows],
            "score": [r[3] for r in rows],
            "source": [source] * len(rows),
        }
    )


@pytest.fixture()
def warehouse(tmp_path):
    wh = open_warehouse(f"duckdb:///{tmp_path}/wh.duckdb")
    wh.ensure_schema()
    return wh


def read(wh, query):
    return wh.query(query).to_pylist()


def test_publish_replaces_a_date_and_latest_follows_the_newest(warehouse):
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    assert warehouse.publish(d1, lists(["a", "b"], ["x", "y"]), "run-1", "ease") is True
    assert warehouse.publish(d1, lists(["a", "b"], ["y", "z"]), "run-2", "ease") is True
    rows = read(warehouse, "select user_id, rank, item_id, run_id from recommendations order by 1, 2")
    assert [(r["user_id"], r["rank"], r["item_id"], r["run_id"]) for r in rows] == [
        ("a", 1, "y", "run-2"), ("a", 2, "z", "run-2"), ("b", 1, "y", "run-2"), ("b", 2, "z", "run-2")
    ]
    warehouse.publish(d2, lists(["a"], ["q", "r"]), "run-3", "ease")
    latest = read(warehouse, "select distinct as_of_date from recommendations_latest")
    assert latest == [{"as_of_date": d2}]
    assert read(warehouse, "select count(*) as n from recommendations") == [{"n": 6}]


def test_identical_lists_are_not_rewritten(warehouse):
    d = date(2024, 1, 1)
    warehouse.publish(d, lists(["a"], ["x", "y"]), "run-1", "ease")
    before = read(warehouse, "select * from recommendations order by all")
    assert warehouse.publish(d, lists(["a"], ["x", "y"]), "run-2", "ease") is False
    assert read(warehouse, "select * from recommendations order by all") == before


def test_a_publish_that_fails_midway_leaves_the_old_lists(warehouse):
    d = date(2024, 1, 1)
    warehouse.publish(d, lists(["a", "b"], ["x", "y"]), "run-1", "ease")
    broken = lists(["a", "b"], ["p", "q"])
    # a NULL item_id violates NOT NULL after the delete has run inside the transaction
    broken = broken.set_column(2, "item_id", pa.array(["p", "q", "p", None]))
    with pytest.raises(duckdb.ConstraintException):
        warehouse.publish(d, broken, "run-2", "ease")
    rows = read(warehouse, "select item_id, run_id from recommendations_latest order by user_id, rank")
    assert [(r["item_id"], r["run_id"]) for r in rows] == [("x", "run-1"), ("y", "run-1")] * 2


def test_run_history_records_success_and_failure(warehouse):
    d = date(2024, 1, 1)
    warehouse.start_run("r1", d, "ease", {"l2": 100})
    warehouse.finish_run("r1", RunOutcome(status="succeeded", metrics={"ndcg@10": 0.5}, n_rows=4))
    warehouse.start_run("r2", d, "ease", {"l2": 100})
    warehouse.finish_run("r2", RunOutcome(status="failed", failed_task="train", error="boom"))
    rows = read(
        warehouse,
        "select run_id, status, metrics->>'$.\"ndcg@10\"' as ndcg, n_rows, failed_task, error, "
        "finished_at is not null as finished from recommendation_runs order by run_id",
    )
    assert rows == [
        {"run_id": "r1", "status": "succeeded", "ndcg": "0.5", "n_rows": 4, "failed_task": None,
         "error": None, "finished": True},
        {"run_id": "r2", "status": "failed", "ndcg": None, "n_rows": None, "failed_task": "train",
         "error": "boom", "finished": True},
    ]


def test_unknown_warehouse_urls_are_refused():
    with pytest.raises(WarehouseError, match="unsupported warehouse URL scheme 'mysql'"):
        open_warehouse("mysql://x")
    with pytest.raises(WarehouseError, match="duckdb:///path/file.duckdb"):
        open_warehouse("duckdb:///")
