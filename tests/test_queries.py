"""Every query in sql/queries on a small hand-built warehouse, on DuckDB and PostgreSQL,
and the `decayrec sql` command that runs them."""

import math
from datetime import date

import pyarrow as pa
import pytest

from decayrec.cli import main
from decayrec.warehouse.base import RunOutcome, ab_bucket
from decayrec.warehouse.queries import QueryError, list_queries, run_query
from tests.warehouses import open_url

D1, D2 = date(2024, 3, 1), date(2024, 3, 2)

# (user, [items by rank], [sources by rank]) per as-of date
LISTS = {
    D1: [
        ("u1", ["a", "b", "c"], ["model"] * 3),
        ("u2", ["a", "d", "e"], ["model", "model", "fallback"]),
        ("u3", ["a", "b", "f"], ["fallback"] * 3),
    ],
    D2: [
        ("u1", ["a", "b", "c"], ["model"] * 3),
        ("u2", ["b", "a", "g"], ["model"] * 3),
        ("u4", ["a", "b", "c"], ["fallback"] * 3),
    ],
}


def metrics(ndcg):
    return {
        "user_time": {
            "n_eval_users": 3,
            "model": {
                "ndcg@10": ndcg,
                "recall@10": 0.2,
                "map@10": 0.05,
                "hitrate@10": 0.3,
                "coverage@10": 0.4,
            },
            "popularity": {"ndcg@10": 0.01, "recall@10": 0.02},
        },
        "decay": {"half_life_days": 365},
    }


def table(entries):
    rows = [
        (user, rank, item, 1.0 / rank, source)
        for user, items, sources in entries
        for rank, (item, source) in enumerate(zip(items, sources, strict=True), start=1)
    ]
    names = ["user_id", "rank", "item_id", "score", "source"]
    columns = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    columns["rank"] = pa.array(columns["rank"], pa.int32())
    return pa.table(columns)


@pytest.fixture()
def warehouse(warehouse_url):
    wh = open_url(warehouse_url, history_days=30)
    wh.ensure_schema()
    for run_id, day, ndcg in (("r1", D1, 0.1), ("r2", D2, 0.12)):
        wh.start_run(run_id, day, "ease", {"k": 3})
        wh.publish(day, table(LISTS[day]), run_id, "ease")
        wh.finish_run(run_id, RunOutcome(status="succeeded", metrics=metrics(ndcg), n_users=3))
    wh.start_run("r3", D2, "ease", {"k": 3})
    wh.finish_run("r3", RunOutcome(status="failed", failed_task="train", error="boom"))
    return wh


def rows(wh, name, **params):
    return run_query(wh, name, {k: str(v) for k, v in params.items()}).to_pylist()


def flat(tuples):
    return [v for t in tuples for v in t]


def pick(result, *keys):
    return [tuple(r[k] for k in keys) for r in result]


def test_every_query_file_is_documented():
    queries = {q.name: q for q in list_queries()}
    assert set(queries) == {
        "ab_buckets",
        "coverage_by_day",
        "fallback_users",
        "list_changes",
        "metric_history",
        "top_items",
        "user_list",
        "user_list_explained",
    }
    for q in queries.values():
        assert q.summary and "Returns:" in q.header and "Parameters:" in q.header, q.name


def test_user_list(warehouse):
    result = rows(warehouse, "user_list", user_id="u2")
    assert pick(result, "as_of_date", "rank", "item_id", "source", "run_id") == [
        (D2, 1, "b", "model", "r2"),
        (D2, 2, "a", "model", "r2"),
        (D2, 3, "g", "model", "r2"),
    ]
    assert rows(warehouse, "user_list", user_id="u3") == []  # no list today
    assert rows(warehouse, "user_list", user_id="u1' or '1'='1") == []


def test_top_items(warehouse):
    result = rows(warehouse, "top_items")
    assert pick(result, "item_id", "n_lists", "best_rank") == [
        ("a", 3, 1),
        ("b", 3, 1),
        ("c", 2, 3),
        ("g", 1, 3),
    ]
    assert [round(r["share_of_lists"], 6) for r in result] == [1.0, 1.0, 0.666667, 0.333333]
    assert [round(r["mean_rank"], 6) for r in result] == [1.333333, 1.666667, 3.0, 3.0]
    assert pick(rows(warehouse, "top_items", limit=2), "item_id") == [("a",), ("b",)]


def _entropy(counts):
    total = sum(counts)
    h = -sum(c / total * math.log(c / total) for c in counts)
    return h / math.log(len(counts))


def test_coverage_by_day(warehouse):
    result = rows(warehouse, "coverage_by_day")
    assert pick(result, "as_of_date", "n_users", "n_entries", "n_items") == [
        (D1, 3, 9, 6),
        (D2, 3, 9, 4),
    ]
    expected = [
        # coverage over the 7 items recommended on any kept date, top10, entropy, fallback
        (6 / 7, 1.0, _entropy([3, 2, 1, 1, 1, 1]), 4 / 9),
        (4 / 7, 1.0, _entropy([3, 3, 2, 1]), 3 / 9),
    ]
    got = [
        (r["coverage"], r["top10_share"], r["item_entropy"], r["fallback_share"]) for r in result
    ]
    assert flat(got) == pytest.approx(flat(expected))
    result = rows(warehouse, "coverage_by_day", catalog_size=10)
    assert [r["coverage"] for r in result] == pytest.approx([0.6, 0.4])


def test_list_changes(warehouse):
    result = rows(warehouse, "list_changes")
    keys = ("user_id", "as_of_date", "previous_date", "n_items", "n_kept", "n_new", "n_dropped")
    assert pick(result, *keys) == [
        ("u4", D2, None, 3, 0, 3, 0),
        ("u2", D2, D1, 3, 1, 2, 2),
        ("u1", D2, D1, 3, 3, 0, 0),
    ]
    assert [r["jaccard"] for r in result] == pytest.approx([0.0, 0.2, 1.0])
    assert [r["top_changed"] for r in result] == [True, True, False]
    first_day = rows(warehouse, "list_changes", as_of_date="2024-03-01")
    assert pick(first_day, "user_id", "previous_date", "n_new") == [
        ("u1", None, 3),
        ("u2", None, 3),
        ("u3", None, 3),
    ]


def test_fallback_users(warehouse):
    assert pick(
        rows(warehouse, "fallback_users"), "user_id", "n_entries", "n_fallback", "fully_fallback"
    ) == [("u4", 3, 3, True)]
    assert pick(
        rows(warehouse, "fallback_users", as_of_date="2024-03-01"),
        "user_id",
        "n_fallback",
        "fully_fallback",
    ) == [("u3", 3, True), ("u2", 1, False)]


def test_metric_history(warehouse):
    result = rows(warehouse, "metric_history")
    assert pick(result, "run_id", "as_of_date", "status", "n_eval_users", "n_users") == [
        ("r1", D1, "succeeded", 3, 3),
        ("r2", D2, "succeeded", 3, 3),
    ]
    assert [r["model_ndcg"] for r in result] == pytest.approx([0.1, 0.12])
    assert [
        (r["model_recall"], r["model_map"], r["model_hitrate"], r["model_coverage"]) for r in result
    ] == [pytest.approx((0.2, 0.05, 0.3, 0.4))] * 2
    assert flat((r["popularity_ndcg"], r["popularity_recall"]) for r in result) == pytest.approx(
        [0.01, 0.02] * 2
    )
    every = rows(warehouse, "metric_history", status="")
    assert pick(every, "run_id", "status", "model_ndcg") == [
        ("r1", "succeeded", pytest.approx(0.1)),
        ("r2", "succeeded", pytest.approx(0.12)),
        ("r3", "failed", None),
    ]
    assert all(r["model_ndcg"] is None for r in rows(warehouse, "metric_history", k=20))


def test_ab_buckets(warehouse):
    result = rows(warehouse, "ab_buckets", salt="checkout-test")
    assert result == [
        {"user_id": u, "bucket": ab_bucket("checkout-test", u)} for u in ("u1", "u2", "u4")
    ]
    default = rows(warehouse, "ab_buckets")
    assert [r["bucket"] for r in default] == [ab_bucket("decayrec", u) for u in ("u1", "u2", "u4")]


def test_parameters_are_checked(warehouse):
    with pytest.raises(QueryError, match="needs --param user_id"):
        run_query(warehouse, "user_list", {})
    with pytest.raises(QueryError, match="has no parameter nope"):
        run_query(warehouse, "top_items", {"nope": "1"})
    with pytest.raises(QueryError, match="no query named 'missing'"):
        run_query(warehouse, "missing")
    with pytest.raises(QueryError, match="lowercase letters"):
        run_query(warehouse, "../warehouse/start_run")


def test_decayrec_sql_prints_a_table(warehouse, warehouse_url, capsys, monkeypatch):
    if warehouse_url.startswith("postgresql"):
        # the password travels in the environment, never on the command line or in a file
        monkeypatch.setenv("DECAYREC_WAREHOUSE_URL", warehouse_url)
        args = []
    else:
        args = ["--warehouse", warehouse_url]
    assert main(["sql", "user_list", "--param", "user_id=u2", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["as_of_date", "rank", "item_id", "score", "source", "model", "run_id"]
    assert out[2].split() == ["2024-03-02", "1", "b", "1", "model", "ease", "r2"]
    assert out[-1] == "(3 rows)"
    assert main(["sql", *args]) == 0  # no name: the list of queries
    listing = capsys.readouterr().out
    assert "top_items" in listing and "$limit" in listing
    assert main(["sql", "user_list", *args]) == 1
    err = capsys.readouterr().err
    assert "decayrec sql failed" in err and "needs --param user_id" in err
    if warehouse_url.startswith("postgresql"):
        password = warehouse_url.split(":")[2].split("@")[0]
        assert main(["sql", "no_such_table_query", *args]) == 1
        captured = capsys.readouterr()
        assert password not in captured.out + captured.err
