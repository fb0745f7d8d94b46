"""Prefect operations on real flow runs: backfill, re-export, the feature cache across a
training failure, the nightly lock, artifacts, and sharded scoring on a local Dask
cluster. Data: MovieLens-small cut to its 600 most-rated movies (tests/ops_data.py)."""

import threading
from datetime import date

import duckdb
import pyarrow.parquet as pq
import pytest
from ops_data import small_config, write_movielens_subset
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from decayrec.lake.features import build_snapshot
from decayrec.scoring.lists import train_and_score
from decayrec.scoring.sharding import FittedModel, shard_of
from flows.backfill import BackfillStopped, backfill
from flows.guard import start_delay_hours
from flows.nightly import nightly
from flows.reexport import reexport
from flows.scoring import score_sharded
from tasks.ops import RunRefused, exclusive_run

DAYS = [date(2018, 9, 28), date(2018, 9, 29), date(2018, 9, 30)]


@pytest.fixture(scope="module")
def subset(movielens_dir, tmp_path_factory):
    return write_movielens_subset(movielens_dir, tmp_path_factory.mktemp("ml600"))


def query(config, text, params=None):
    with duckdb.connect(str(config.data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(text, params or []).fetchall()


def task_runs(flow_run_id):
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name.rsplit("-", 1)[0]: r.state.name for r in runs}


def run_names(flow_run_id):
    """(the flow run's name, the name of the task run tracking it in its parent flow, the
    parent flow run's name)."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        if run.parent_task_run_id is None:
            return run.name, None, None
        tracking = client.read_task_run(run.parent_task_run_id)
        return run.name, tracking.name, client.read_flow_run(tracking.flow_run_id).name


def test_backfill_publishes_each_day_once_and_force_replaces_one_day(
    prefect_harness, subset, tmp_path
):
    config = small_config(subset, tmp_path)
    first = backfill(start=DAYS[0], end=DAYS[-1], config=config)
    assert [d["outcome"] for d in first["days"]] == ["published"] * 3
    # the runs list and the backfill's graph name each run by its date
    for day in first["days"]:
        assert run_names(day["run_id"]) == (
            f"nightly-{day['as_of']}",
            f"nightly-{day['as_of']}",
            "backfill-2018-09-28-to-2018-09-30",
        )
    assert query(config, "select distinct as_of_date from recommendations order by 1") == [
        (d,) for d in DAYS
    ]
    tables = "select * from recommendations order by all"
    before = query(config, tables)
    n_runs = query(config, "select count(*) from recommendation_runs")[0][0]

    again = backfill(start=DAYS[0], end=DAYS[-1], config=config)
    assert [d["outcome"] for d in again["days"]] == ["skipped"] * 3
    assert query(config, tables) == before
    assert query(config, "select count(*) from recommendation_runs")[0][0] == n_runs

    # forcing one day with another k replaces that day's lists, and only those
    forced = backfill(
        start=DAYS[1], end=DAYS[1], force=True, config=config.model_copy(update={"k": 5})
    )
    assert [d["outcome"] for d in forced["days"]] == ["published"]
    per_day = dict(query(config, "select as_of_date, max(rank) from recommendations group by all"))
    assert per_day == {DAYS[0]: 10, DAYS[1]: 5, DAYS[2]: 10}
    untouched = "select * from recommendations where as_of_date <> ? order by all"
    assert query(config, untouched, [DAYS[1]]) == [r for r in before if r[0] != DAYS[1]]

    # re-export: the stored model of the last day, published again with k=3, no training
    result = reexport(as_of=DAYS[2], config=config.model_copy(update={"k": 3}))
    assert result["status"] == "succeeded" and result["published"] is True
    source = first["days"][2]["run_id"]
    assert result["metrics"] == {"reexport_of": source}
    assert run_names(result["run_id"]) == ("reexport-2018-09-30", None, None)
    assert not (config.data_dir / "runs" / result["run_id"] / "model.pt").exists()
    assert task_runs(result["run_id"]).keys().isdisjoint({"train", "fit", "features"})
    assert query(config, "select max(rank), min(run_id) from recommendations_latest") == [
        (3, result["run_id"])
    ]


def test_failed_day_stops_backfill_and_the_rerun_reuses_the_cached_features(
    prefect_harness, subset, tmp_path
):
    config = small_config(subset, tmp_path, orchestration={"fault_train_once": True})
    with pytest.raises(BackfillStopped) as stopped:
        backfill(start=DAYS[0], end=DAYS[-1], config=config)
    message = str(stopped.value)
    assert "stopped at 2018-09-28, which failed in train: injected training failure" in message
    assert "not run: ['2018-09-29', '2018-09-30']" in message
    [(failed_id, failed_task)] = query(
        config, "select run_id, failed_task from recommendation_runs where status = 'failed'"
    )
    assert failed_task == "train"
    assert query(config, "select count(*) from recommendations")[0][0] == 0
    assert task_runs(failed_id)["features"] == "Completed"

    rerun = nightly(as_of=DAYS[0], config=config)
    assert rerun["status"] == "succeeded" and rerun["published"] is True
    states = task_runs(rerun["run_id"])
    assert states["features"] == "Cached"  # not rebuilt: same events, same decay settings
    assert states["train"] == "Completed"

    # the run's artifacts, as the UI shows them
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[rerun["run_id"]])
            )
        )
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == {
        "nightly-metrics",
        "nightly-metric-history",
        "nightly-validation",
        "nightly-lists-sample",
        "nightly-decay",
        "nightly-gate",
    }
    assert "decision: `" in by_key["nightly-gate"].data
    assert "data:image/png;base64," in by_key["nightly-decay"].data
    assert "no new source files" in by_key["nightly-validation"].data  # loaded by the failed run


def test_two_nightly_runs_started_at_once_never_publish_together(prefect_harness, subset, tmp_path):
    config = small_config(subset, tmp_path)
    results, errors = [], []

    def run():
        try:
            results.append(nightly(as_of=DAYS[0], config=config))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors and len(results) == 2
    assert sorted(r["published"] for r in results) == [False, True]
    (a_start, a_end), (b_start, b_end) = query(
        config,
        "select started_at, finished_at from recommendation_runs "
        "where status = 'succeeded' order by started_at",
    )
    assert a_end <= b_start  # the second waited for the first to finish

    # a run that may not wait is refused while another holds the lock, and recorded
    impatient = config.model_copy(
        update={"orchestration": config.orchestration.model_copy(update={"lock_wait_seconds": 0})}
    )
    with exclusive_run(config):
        with pytest.raises(RunRefused):
            nightly(as_of=DAYS[1], config=impatient)
    [(status, task, error)] = query(
        config,
        "select status, failed_task, error from recommendation_runs where as_of_date = ?",
        [DAYS[1]],
    )
    assert (status, task) == ("failed", "lock") and "lock_wait_seconds" in error


def test_sharded_scoring_on_dask_gives_the_single_process_lists(prefect_harness, subset, tmp_path):
    from decayrec.lake.ingest import load_batches, stage_sources

    config = small_config(subset, tmp_path)
    load_batches(config, stage_sources(config, "load"), "load")
    snapshot = build_snapshot(config, config.as_of_time(DAYS[0]))
    single = train_and_score(config, snapshot, "single")
    fitted = FittedModel(str(tmp_path / "runs" / "dask"), single.model_path, single.model, "cpu", 0)
    dask = config.model_copy(
        update={
            "orchestration": config.orchestration.model_copy(
                update={"score_shards": 3, "task_runner": "dask", "dask_workers": 2}
            )
        }
    )

    @flow
    def score_on_dask():
        return score_sharded(dask, snapshot, fitted)

    sharded = score_on_dask()
    expected, got = pq.read_table(single.lists_path), pq.read_table(sharded.lists_path)
    assert got.num_rows == expected.num_rows == 10 * snapshot.n_users
    assert got.equals(expected)
    assert (sharded.n_users, sharded.n_fallback_rows) == (single.n_users, single.n_fallback_rows)


def test_shards_partition_the_users_stably():
    ids = [str(i) for i in range(1000)]
    shards = shard_of(ids, 4)
    assert set(shards.tolist()) == {0, 1, 2, 3}
    assert shards.tolist() == shard_of(ids, 4).tolist()
    assert min((shards == s).sum() for s in range(4)) > 200


def test_start_delay_is_measured_from_the_slot():
    from datetime import UTC, datetime, timedelta

    slot = datetime(2026, 1, 2, 2, 0, tzinfo=UTC)
    assert start_delay_hours(slot, slot + timedelta(hours=7)) == 7.0
