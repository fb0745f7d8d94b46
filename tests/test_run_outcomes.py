"""Clear outcomes of a nightly run (real Prefect flow runs, a real lake and warehouse): a
run with no events before its as-of instant fails at features with one paragraph and
publishes nothing. The CLI case of a source glob matching nothing: tests/test_cli.py. A
large clean batch is judged by Great Expectations after the publish (gx-audit)."""

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from decayrec.config import DecayrecConfig, EvaluationConfig, SourceConfig, ValidationConfig
from decayrec.lake.features import NoEvents
from flows.nightly import nightly
from tests.ops_data import tiny_events


def test_events_all_after_the_as_of_instant_fail_the_run_at_features(prefect_harness, tmp_path):
    later = tmp_path / "later.csv"  # 2024-06-01 and after
    later.write_text(
        "user_id,item_id,event_type,event_ts\n"
        + "".join(f"u{u},i{i},view,{1717200000 + 60 * u + i}\n" for u in range(3) for i in range(4))
    )
    config = DecayrecConfig(
        data_dir=tmp_path / "d", sources=[SourceConfig(path=str(later))], use_tuned=False
    )
    with pytest.raises(NoEvents) as failed:
        nightly(as_of=date(2024, 1, 1), config=config)
    assert str(failed.value) == (
        "no events before 2024-01-01T00:00:00+00:00 in the lake "
        f"({tmp_path / 'd' / 'lake.duckdb'}): nothing to recommend from (it holds 12 events, "
        "all at or after that instant)"
    )
    with duckdb.connect(str(tmp_path / "d" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from recommendations").fetchall() == [(0,)]
        assert con.execute(
            "select status, failed_task, error from recommendation_runs"
        ).fetchall() == [("failed", "features", str(failed.value))]
    # the events were loaded: a run for a later date has something to recommend from
    with duckdb.connect(str(tmp_path / "d" / "lake.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from events").fetchall() == [(12,)]


def test_a_clean_batch_deferred_by_validation_is_judged_by_gx_after_the_publish(
    prefect_harness, tmp_path
):
    """validation.gx_defer_min_rows at the batch's size: the nightly loads it on the SQL
    checks, publishes, then its gx-audit stage runs Great Expectations on the sample and
    records the verdict in the batch's JSON and the run's metrics."""
    config = DecayrecConfig(
        data_dir=tmp_path / "d",
        sources=[SourceConfig(path=str(tiny_events(tmp_path)))],
        k=3,
        use_tuned=False,
        evaluation=EvaluationConfig(protocols=["user_time"]),
        validation=ValidationConfig(gx_defer_min_rows=100),
    )
    result = nightly(as_of=date(2024, 1, 1), config=config)
    assert result["status"] == "succeeded" and result["published"] is True
    [batch] = result["batches"]
    report = json.loads(Path(batch["validation_path"]).read_text())
    assert report["gx_deferred"] is True and report["great_expectations"]["success"] is True
    assert len(report["great_expectations"]["results"]) >= 5
    assert not list((tmp_path / "d" / "validation").glob("*/*.gx-sample.parquet"))
    with duckdb.connect(str(tmp_path / "d" / "warehouse.duckdb"), read_only=True) as con:
        [(metrics, stages)] = con.execute(
            "select metrics, stage_seconds from recommendation_runs"
        ).fetchall()
    assert json.loads(metrics)["gx_audit"] == {"batches": 1, "success": True, "failed": []}
    stage_order = list(json.loads(stages))
    assert stage_order.index("export") < stage_order.index("gx-audit")
