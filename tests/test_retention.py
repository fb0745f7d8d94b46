"""Ten nightly runs on tiny data, through real Prefect flow runs: what stays in the data
directory (retention), what each run is called, and what its artifacts show."""

import base64
import json
import os
import re
import struct
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from decayrec.config import DecayrecConfig, SourceConfig
from decayrec.evaluation.retention import RunFiles, prune
from flows.nightly import nightly
from flows.reexport import NothingToReexport, reexport
from tests.ops_data import taste_group_events

FIRST_DAY = date(2023, 3, 1)  # the events: 2022-01-01 to 2022-10
N_GOOD = 3  # runs of a model that becomes the champion, then a worse one the gate refuses
N_RUNS = 7
KEEP = 3


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def embedded_pngs(markdown: str) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", markdown)
    ]


def runs_recorded(config):
    with duckdb.connect(str(config.data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "select run_id, snapshot_id, status, metrics from recommendation_runs "
            "order by started_at desc"
        ).fetchall()


def subdirs(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.is_dir()} if path.exists() else set()


@pytest.fixture(scope="module")
def nightly_runs(tmp_path_factory, prefect_harness):
    folder = tmp_path_factory.mktemp("retention")
    good = DecayrecConfig.model_validate(
        {
            "data_dir": folder / "data",
            "sources": [SourceConfig(path=str(taste_group_events(folder)))],
            "k": 3,
            "evaluation": {"protocols": ["user_time"], "min_user_events": 4, "holdout_items": 2},
            "retention": {"keep_runs": KEEP},
        }
    )
    # every user below min_history: popularity lists, worse than the champion's
    worse = DecayrecConfig.model_validate(
        {**good.model_dump(), "model": {"name": "itemknn", "min_history": 1000}}
    )
    results, sizes = [], []
    started = time.perf_counter()
    for i in range(N_RUNS):
        config = good if i < N_GOOD else worse
        if i == N_RUNS - 2:  # a checkpoint a killed training left behind yesterday
            stale = config.data_dir / "checkpoints" / "sasrec.ckpt"
            stale.parent.mkdir(exist_ok=True)
            stale.write_bytes(b"stale")
            os.utime(stale, (time.time() - 86400, time.time() - 86400))
        # the last run is given no date: it runs for today in config.timezone
        as_of = None if i == N_RUNS - 1 else FIRST_DAY + timedelta(days=i)
        results.append(nightly(as_of=as_of, config=config))
        sizes.append(sum(p.stat().st_size for p in config.data_dir.rglob("*") if p.is_file()))
    seconds = time.perf_counter() - started
    return good, results, sizes, seconds


def test_the_data_directory_keeps_the_last_runs_and_the_champion(nightly_runs):
    config, results, sizes, _ = nightly_runs
    data = config.data_dir
    assert [r["status"] for r in results] == ["succeeded"] * N_RUNS
    ids = [r["run_id"] for r in results]
    recorded = runs_recorded(config)
    assert [r[0] for r in recorded] == ids[::-1]  # the history itself is kept whole
    champion = json.loads((data / "models" / "champion.json").read_text())["model_id"]
    gates = [json.loads(r[3])["gate"]["decision"] for r in recorded[::-1]]
    assert gates == ["promote"] * N_GOOD + ["keep_champion"] * (N_RUNS - N_GOOD)
    assert champion == ids[N_GOOD - 1]

    kept = set(ids[-KEEP:]) | {champion}
    assert subdirs(data / "runs") == kept
    assert subdirs(data / "models") == kept
    assert subdirs(data / "validation") == set()  # only the first run loaded a batch
    snapshot_of = {run_id: snapshot for run_id, snapshot, *_ in recorded}
    assert len(set(snapshot_of.values())) == N_RUNS  # one per as-of date
    assert subdirs(data / "snapshots") == {snapshot_of[r] for r in kept}
    assert not (data / "checkpoints" / "sasrec.ckpt").exists()
    # each model is stored once: in the registry, not in its run's directory too
    assert list((data / "runs").glob("*/model.pt")) == []
    assert all((data / "models" / r / "model.pt").exists() for r in kept)
    # the run's record says what was pruned
    retention = json.loads(recorded[0][3])["retention"]
    assert retention["kept_runs"] == [*ids[::-1][:KEEP], champion]
    assert retention["pruned_runs"] == [ids[-KEEP - 1]] and retention["bytes_freed"] > 0
    # the directory stops growing once the policy is in force
    assert max(sizes[KEEP + 1 :]) < 1.2 * min(sizes[KEEP + 1 :])


def test_each_run_is_named_by_its_as_of_date(nightly_runs):
    config, results, *_ = nightly_runs
    with get_client(sync_client=True) as client:
        names = [client.read_flow_run(r["run_id"]).name for r in results]
    dates = [FIRST_DAY + timedelta(days=i) for i in range(N_RUNS - 1)] + [config.today()]
    assert names == [f"nightly-{d.isoformat()}" for d in dates]
    assert [r["as_of"] for r in results] == [d.isoformat() for d in dates]


def artifacts_of(run_id):
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {a.key: a.data for a in artifacts}


def test_the_artifacts_show_tables_and_wide_plots_not_file_links(nightly_runs):
    config, results, *_ = nightly_runs
    first, last = artifacts_of(results[0]["run_id"]), artifacts_of(results[-1]["run_id"])
    assert "file://" not in json.dumps([first, last])
    # the validation results as a table
    validation = first["nightly-validation"]
    assert "270 rows read, 270 accepted, 270 inserted, 0 quarantined" in validation
    assert "| expectation | success | unexpected count |" in validation
    assert "| `expect_column_values_to_not_be_null` (user_id) | yes | 0 |" in validation
    assert "| `expect_column_values_to_be_in_set` (event_type) | yes | 0 |" in validation
    assert "batch passed: yes" in validation
    # the decay plot: the data's only event type, the kernel's parameters, its whole age span
    decay = last["nightly-decay"]
    assert "decay kernel: exponential, half-life 365 days" in decay
    assert "event types in the data with a weight: view" in decay
    assert "per-user decay off" in decay and "every user has the same half-life 365 days" in decay
    [curves] = embedded_pngs(decay)  # no one-bar histogram
    assert png_size(curves)[0] >= 1200
    [metrics] = [m for run_id, _, _, m in runs_recorded(config) if run_id == results[-1]["run_id"]]
    record = json.loads(metrics)["decay"]
    assert record["event_types"] == ["view"]
    assert record["oldest_age_days"] > (date.today() - date(2022, 1, 1)).days - 1
    # the metrics: the gate's protocol first, a few columns
    table = json.loads(last["nightly-metrics"])
    assert list(table[0]) == [
        "run",
        "as_of",
        "model",
        "published",
        "users",
        "user_time ndcg@10",
        "user_time popularity ndcg@10",
    ]
    assert len(table) == 6 and table[0]["run"].startswith("this run ")
    # the metrics over the runs: a chart
    history = last["nightly-metric-history"]
    assert f"last {N_RUNS} succeeded runs" in history
    [chart] = embedded_pngs(history)
    assert png_size(chart)[0] >= 1200


def test_pruning_leaves_unrecorded_and_fresh_files_alone(tmp_path):
    data = tmp_path / "data"
    for run in ("old", "new", "other-tool"):
        (data / "runs" / run).mkdir(parents=True)
        (data / "runs" / run / "lists.parquet").write_bytes(b"x" * 100)
    for snapshot, complete in (("s-old", True), ("s-new", True), ("partial", False)):
        (data / "snapshots" / snapshot).mkdir(parents=True)
        if complete:
            (data / "snapshots" / snapshot / "snapshot.json").write_text("{}")
    then = time.time() - 3600
    for path in data.rglob("*"):
        os.utime(path, (then, then))
    runs = [RunFiles("new", "s-new", live=True), RunFiles("old", "s-old")]
    pruned = prune(data, runs, keep_runs=1, current_run="new", current_snapshot="s-new")
    assert (pruned.runs, pruned.snapshots, pruned.bytes_freed) == (["old"], ["s-old"], 102)
    assert subdirs(data / "runs") == {"new", "other-tool"}  # not recorded: not ours to delete
    assert subdirs(data / "snapshots") == {"s-new", "partial"}  # partial: maybe being built
    # an unreadable champion pointer: nothing is pruned (the gate sets it aside first)
    (data / "models").mkdir()
    (data / "models" / "champion.json").write_text("garbage")
    with pytest.raises(ValueError, match="champion pointer"):
        prune(data, [RunFiles("x")], keep_runs=1, current_run="new", current_snapshot=None)


def test_a_kept_run_can_be_republished_and_a_pruned_one_says_why(nightly_runs):
    config, results, *_ = nightly_runs
    again = reexport(as_of=FIRST_DAY + timedelta(days=N_RUNS - 2), config=config)
    assert again["status"] == "succeeded" and again["metrics"] == {
        "reexport_of": results[-2]["run_id"]
    }
    with pytest.raises(NothingToReexport, match="retention keeps the files of the last 3 runs"):
        reexport(as_of=FIRST_DAY + timedelta(days=N_GOOD), config=config)
