"""Clear outcomes of a nightly run (real Prefect flow runs, a real lake and warehouse): a
run with no events before its as-of instant fails at features with one paragraph and
publishes nothing. The CLI case of a source glob matching nothing: tests/test_cli.py."""

from datetime import date

import duckdb
import pytest

from decayrec.config import DecayrecConfig, SourceConfig
from decayrec.lake.features import NoEvents
from flows.nightly import nightly


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
