"""The publish check (decayrec.evaluation.publish_check): sanity bounds on the lists about to be
published, against the previous published date's. The figures on hand-made lists, then
real nightly runs on MovieLens-small's 600 most-rated movies (tests/ops_data.py): a
second day whose lists fail a bound is not published, and the first day's stay live."""

import json
from datetime import date

import duckdb
import pyarrow as pa
import pytest
from ops_data import small_config, write_movielens_subset

from decayrec.config import PublishConfig
from decayrec.evaluation.publish_check import PublishCheckFailed, check_lists
from flows.nightly import nightly

D1, D2 = date(2018, 9, 30), date(2018, 10, 1)


def lists(rows):
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "source": [r[2] for r in rows],
        }
    )


def previous(rows, day=D1):
    table = lists(rows)
    return table.append_column("as_of_date", pa.array([day] * len(rows), pa.date32()))


TONIGHT = lists(
    [
        ("u1", "a", "model"),
        ("u1", "b", "model"),
        ("u2", "a", "model"),
        ("u2", "c", "fallback"),
        ("u3", "d", "fallback"),
        ("u3", "a", "fallback"),
    ]
)
BEFORE = previous(
    [
        ("u1", "a", "model"),
        ("u1", "e", "model"),
        ("u2", "a", "model"),
        ("u2", "f", "model"),
        ("u9", "g", "model"),  # u9 is not listed tonight: left out of the overlap
        ("u9", "h", "model"),
    ]
)


def test_figures_against_the_previous_date():
    figures = check_lists(TONIGHT, BEFORE, as_of=D2, n_items=10, settings=PublishConfig())
    assert figures["fallback_share"] == 0.5  # 3 of 6 rows: at the bound, not over it
    assert figures["n_items_listed"] == 4 and figures["coverage"] == 0.4
    assert figures["previous_coverage"] == 0.5  # a, e, f, g, h of 10
    assert figures["coverage_ratio"] == 0.8
    assert figures["overlap"] == 0.5 and figures["overlap_users"] == 2  # (u1,a), (u2,a) of 4
    assert figures["previous_date"] == "2018-09-30" and figures["passed"] is True


def test_each_bound_fails_with_one_paragraph_naming_it():
    strict = PublishConfig(max_fallback_share=0.4, min_coverage_ratio=0.9, min_overlap=0.6)
    with pytest.raises(PublishCheckFailed) as failed:
        check_lists(
            TONIGHT, BEFORE, as_of=D2, n_items=10, settings=strict, lists_file="x/lists.parquet"
        )
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("the lists for 2018-10-01 (x/lists.parquet) fail the publish check")
    assert "fallback share 0.50 (3 of 6 rows with source 'fallback') exceeds " in message
    assert "publish.max_fallback_share 0.40" in message
    assert (
        "catalogue coverage 0.400 (4 of 10 items) is 0.80 times the 0.500 (5 items) of "
        "2018-09-30, below publish.min_coverage_ratio 0.90" in message
    )
    assert "overlap 0.50 with 2018-09-30" in message and "publish.min_overlap 0.60" in message
    assert message.endswith("they are not published and the lists of 2018-09-30 stay live")


def test_popularity_lists_chosen_by_the_gate_skip_the_fallback_and_coverage_bounds():
    everything_fallback = lists([("u1", "a", "fallback"), ("u2", "a", "fallback")])
    figures = check_lists(
        everything_fallback,
        BEFORE,
        as_of=D2,
        n_items=10,
        settings=PublishConfig(),
        model_lists=False,
    )
    assert figures["fallback_share"] == 1.0 and figures["fallback_bound_applied"] is False
    assert figures["coverage_ratio"] == 0.2 and figures["coverage_bound_applied"] is False
    assert figures["overlap"] == 0.5 and figures["passed"] is True  # (u1,a), (u2,a) of 4
    with pytest.raises(PublishCheckFailed, match="overlap 0.50 with 2018-09-30"):
        check_lists(
            everything_fallback,
            BEFORE,
            as_of=D2,
            n_items=10,
            settings=PublishConfig(min_overlap=0.6),
            model_lists=False,
        )
    # the same lists as model lists, on a first date: the fallback bound alone applies
    first = check_lists(
        lists([("u1", "a", "model")]), previous([]), as_of=D1, n_items=4, settings=PublishConfig()
    )
    assert first["previous_date"] is None and first["overlap"] is None
    assert first["coverage_ratio"] is None and first["passed"] is True
    with pytest.raises(PublishCheckFailed) as failed:
        check_lists(
            everything_fallback, previous([]), as_of=D1, n_items=4, settings=PublishConfig()
        )
    assert str(failed.value) == (
        "the lists for 2018-09-30 fail the publish check: fallback share 1.00 (2 of 2 rows with "
        "source 'fallback') exceeds publish.max_fallback_share 0.50; they are not published and "
        "no earlier lists are published"
    )


@pytest.fixture(scope="module")
def subset(movielens_dir, tmp_path_factory):
    return write_movielens_subset(movielens_dir, tmp_path_factory.mktemp("ml600"))


def test_lists_failing_a_bound_are_not_published_and_yesterdays_stay_live(
    prefect_harness, subset, tmp_path
):
    config = small_config(subset, tmp_path)
    first = nightly(as_of=D1, config=config)
    assert first["status"] == "succeeded" and first["published"] is True
    checked = first["metrics"]["publish_check"]
    assert checked["enabled"] is True and checked["passed"] is True
    assert checked["previous_date"] is None and checked["n_rows"] == first["n_rows"]
    assert checked["fallback_share"] == round(first["n_fallback_rows"] / first["n_rows"], 6)
    warehouse = config.data_dir / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        before = con.execute("select * from recommendations_latest order by all").fetchall()

    # the same lists on the next day, with a bound that their few fallback rows exceed
    assert 0 < first["n_fallback_rows"] < first["n_rows"]
    strict = config.model_copy(
        update={"publish": config.publish.model_copy(update={"max_fallback_share": 0.001})}
    )
    with pytest.raises(PublishCheckFailed) as failed:
        nightly(as_of=D2, config=strict)
    message = str(failed.value)
    share = first["n_fallback_rows"] / first["n_rows"]
    assert message.startswith("the lists for 2018-10-01 (")
    assert "lists.parquet) fail the publish check: " in message
    assert (
        f"fallback share {share:.2g} ({first['n_fallback_rows']} of {first['n_rows']} rows "
        "with source 'fallback') exceeds publish.max_fallback_share 0.001" in message
    )
    assert message.endswith("they are not published and the lists of 2018-09-30 stay live")
    assert "\n" not in message

    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select * from recommendations_latest order by all").fetchall() == before
        runs = con.execute(
            "select as_of_date, status, failed_task, error, metrics from recommendation_runs "
            "order by started_at"
        ).fetchall()
    assert [r[:3] for r in runs] == [(D1, "succeeded", None), (D2, "failed", "publish-check")]
    assert runs[1][3] == message
    assert json.loads(runs[0][4])["publish_check"]["passed"] is True

    # with the default bounds the next day passes, its figures against the first day's
    rerun = nightly(as_of=D2, config=config)
    assert rerun["status"] == "succeeded" and rerun["published"] is True
    checked = rerun["metrics"]["publish_check"]
    assert checked["previous_date"] == "2018-09-30" and checked["passed"] is True
    # no events between the two dates: the same lists, so full overlap and the same coverage
    assert checked["overlap"] == 1.0 and checked["overlap_users"] == checked["n_rows"] // 10
    assert checked["coverage_ratio"] == 1.0


def test_previous_lists_query_reads_the_newest_earlier_date(warehouse_url):
    """sql/warehouse/previous_lists.sql on both warehouses (DuckDB and PostgreSQL)."""
    from decayrec.sqlfiles import sql
    from tests.warehouses import open_url

    warehouse = open_url(warehouse_url)
    warehouse.ensure_schema()
    for day, item in [(date(2024, 1, 1), "x"), (date(2024, 1, 3), "y")]:
        table = pa.table(
            {
                "user_id": ["u1", "u2"],
                "rank": pa.array([1, 1], pa.int32()),
                "item_id": [item, item],
                "score": [1.0, 0.5],
                "source": ["model", "fallback"],
            }
        )
        warehouse.publish(day, table, f"run-{day}", "ease")

    def previous_of(day):
        rows = warehouse.query(sql("warehouse/previous_lists"), {"as_of_date": day}).to_pylist()
        return sorted((r["as_of_date"], r["user_id"], r["item_id"], r["source"]) for r in rows)

    assert previous_of(date(2024, 1, 1)) == []
    assert previous_of(date(2024, 1, 3)) == [
        (date(2024, 1, 1), "u1", "x", "model"),
        (date(2024, 1, 1), "u2", "x", "fallback"),
    ]
    assert [r[2] for r in previous_of(date(2024, 1, 9))] == ["y", "y"]
