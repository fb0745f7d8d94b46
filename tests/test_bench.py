"""`decayrec bench` at 10^5 events end to end, and the global-time split it exports for
peers (bench/peers.py; the peers' own environment is never built in the test suite)."""

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from decayrec_tools.bench import STAGES, bench_config, evaluate_lists, export_split

ROOT = Path(__file__).resolve().parents[1]
N_EVENTS = 100_000


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One `decayrec bench --events 100000` run as an operator starts it (a real process)."""
    base = tmp_path_factory.mktemp("bench")
    out, data_root = base / "out", base / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "decayrec.cli", "bench", "--events", str(N_EVENTS)]
        + ["--out", str(out), "--data-root", str(data_root)],
        cwd=base,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, data_root, result.stdout


def test_bench_json_has_every_stage_with_figures(bench_run):
    out, data_root, _ = bench_run
    results = json.loads((out / "bench.json").read_text())
    assert results["n_events"] == N_EVENTS and results["complete"] is True
    assert [s["stage"] for s in results["stages"]] == list(STAGES)
    for s in results["stages"]:
        assert s["seconds"] > 0
        assert s["events_per_s"] > 0
        assert s["peak_rss_mib"] > 0
        assert s["peak_rss_mib"] >= s["start_rss_mib"] > 0
    total = results["total"]
    assert total["stage_seconds"] == pytest.approx(sum(s["seconds"] for s in results["stages"]))
    assert total["wall_seconds"] >= total["stage_seconds"]
    assert total["peak_rss_mib"] == max(s["peak_rss_mib"] for s in results["stages"])
    stages = {s["stage"]: s for s in results["stages"]}
    assert stages["validate"]["detail"]["rows_inserted"] == N_EVENTS
    assert stages["train"]["detail"]["n_users"] == stages["features"]["detail"]["n_users"]
    assert stages["export"]["detail"]["published"] is True
    # GX after the publish, beside the night: 10^5 rows < gx_defer_min_rows, judged inline
    [audit] = results["extra_stages"]
    assert audit["stage"] == "gx-audit" and audit["detail"]["batches"] == 0
    evaluation = results["evaluation"]
    assert evaluation["protocol"] == "global_time" and evaluation["n_eval_users"] > 0
    for name in ("model", "popularity"):
        for metric in ("ndcg@10", "recall@10", "ndcg@20", "recall@20"):
            assert 0.0 <= evaluation[name][metric] <= 1.0
    # the events live under the data root, never in the repository
    assert Path(results["events"]["path"]).is_relative_to(data_root)


def test_bench_markdown_and_table_name_every_stage(bench_run):
    out, _, stdout = bench_run
    text = (out / "bench.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| stage | wall s | events/s | peak RSS MiB")
    for stage in STAGES:
        assert any(line.startswith(f"| {stage} |") for line in table), stage
        assert f"  {stage} " in stdout
    assert "| **all stages** |" in text
    assert any(line.startswith("| ease |") for line in table)
    assert any(line.startswith("| popularity (decayed) |") for line in table)


def test_published_lists_are_in_the_warehouse(bench_run):
    out, _, _ = bench_run
    results = json.loads((out / "bench.json").read_text())
    train = next(s for s in results["stages"] if s["stage"] == "train")
    with duckdb.connect(str(out / "data" / "warehouse.duckdb"), read_only=True) as con:
        n_rows, n_users = con.execute(
            "select count(*), count(distinct user_id) from recommendations_latest"
        ).fetchall()[0]
        status = con.execute("select status from recommendation_runs").fetchall()
    assert n_rows == train["detail"]["n_rows"]
    assert n_users == train["detail"]["n_users"]
    assert status == [("succeeded",)]


@pytest.fixture(scope="module")
def split(bench_run, tmp_path_factory):
    out, _, _ = bench_run
    results = json.loads((out / "bench.json").read_text())
    config = bench_config(out, results["events"]["path"], "ease")
    as_of = config.as_of_time(datetime.fromisoformat(results["as_of"]).date())
    return results, export_split(config, as_of, tmp_path_factory.mktemp("split"))


def test_split_export_is_the_backtests_split(split):
    results, files = split
    train = pq.read_table(files.train_path)
    truth = pq.read_table(files.truth_path)
    assert train.column_names == [
        "user_id",
        "item_id",
        "event_type",
        "type_weight",
        "event_ts",
        "ts_seconds",
        "value",
    ]
    assert truth.column_names == ["user_id", "item_id"]
    ev = results["evaluation"]
    assert files.cutoff == ev["cutoff"]
    cutoff = datetime.fromisoformat(files.cutoff)
    ts = train["event_ts"].to_pylist()
    assert max(ts) < cutoff
    # the test window is about evaluation.test_fraction (0.1) of the events
    assert 0.85 * N_EVENTS <= train.num_rows < N_EVENTS
    assert pa.compute.min(train["type_weight"]).as_py() > 0
    # the same users and items as decayrec's backtest trained on
    assert len(set(train["user_id"].to_pylist())) == ev["n_train_users"]
    assert len(set(train["item_id"].to_pylist())) == ev["n_train_items"]
    assert truth.num_rows == ev["n_truth_items"]
    # the truth holds only items the user did not have in training, of users with history
    seen = set(zip(train["user_id"].to_pylist(), train["item_id"].to_pylist(), strict=True))
    pairs = list(zip(truth["user_id"].to_pylist(), truth["item_id"].to_pylist(), strict=True))
    assert pairs and not any(p in seen for p in pairs)
    train_users = set(train["user_id"].to_pylist())
    assert all(u in train_users for u, _ in pairs)


def test_evaluate_lists_counts_like_the_backtest(split, tmp_path):
    results, files = split
    ev = results["evaluation"]
    train = pq.read_table(files.train_path, columns=["user_id", "item_id"])
    truth = pq.read_table(files.truth_path)
    train_items = set(train["item_id"].to_pylist())

    # an oracle: each user's truth items that occur in training, first; then a seen item
    # (removed by the evaluation) and an item outside the truth
    rows = {"user_id": [], "rank": [], "item_id": []}
    by_user: dict[str, list[str]] = {}
    for u, i in zip(truth["user_id"].to_pylist(), truth["item_id"].to_pylist(), strict=True):
        if i in train_items:
            by_user.setdefault(u, []).append(i)
    seen_item = dict(zip(train["user_id"].to_pylist(), train["item_id"].to_pylist(), strict=True))
    for u, items in by_user.items():
        listed = [seen_item[u], *sorted(items)[:10]]
        for r, i in enumerate(listed, start=1):
            rows["user_id"].append(u)
            rows["rank"].append(r)
            rows["item_id"].append(i)
    lists = tmp_path / "oracle.parquet"
    pq.write_table(pa.table(rows), lists)
    result = evaluate_lists(files, lists)
    assert result["n_eval_users"] == ev["n_eval_users"] == len(by_user)
    assert result["n_truth_dropped_not_in_training"] == ev["n_truth_dropped_not_in_training"]
    assert result["n_seen_items_removed"] == len(by_user)
    assert result["metrics"]["ndcg@10"] == pytest.approx(1.0)
    assert result["metrics"]["recall@10"] == pytest.approx(1.0)

    # an empty list scores zero; a list of only seen items too
    empty = tmp_path / "seen.parquet"
    users = sorted(by_user)
    pq.write_table(
        pa.table(
            {
                "user_id": users,
                "rank": np.ones(len(users), dtype=np.int32),
                "item_id": [seen_item[u] for u in users],
            }
        ),
        empty,
    )
    nothing = evaluate_lists(files, empty)
    assert nothing["metrics"]["ndcg@10"] == 0.0 and nothing["n_users_listed"] == 0


def test_validation_split_never_reaches_the_test_window(split, tmp_path):
    results, files = split
    config = bench_config(Path(results["out_dir"]), results["events"]["path"], "ease")
    as_of = config.as_of_time(datetime.fromisoformat(results["as_of"]).date())
    validation = export_split(config, as_of, tmp_path, split="validation")
    test_cutoff = datetime.fromisoformat(files.cutoff)
    assert datetime.fromisoformat(validation.as_of) == test_cutoff
    assert datetime.fromisoformat(validation.cutoff) < test_cutoff
    train = pq.read_table(validation.train_path)
    assert max(train["event_ts"].to_pylist()) < datetime.fromisoformat(validation.cutoff)
    assert validation.n_truth > 0
