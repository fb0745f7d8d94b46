"""The `decayrec` command as an operator runs it (a real process, a real Prefect run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.ops_data import tiny_events

ROOT = Path(__file__).resolve().parents[1]
DECAYREC = [sys.executable, "-m", "decayrec.cli"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [*DECAYREC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_demo_runs_the_nightly_flow_and_prints_a_list(tmp_path):
    result = run_cli("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "list of user u0:" in result.stdout
    assert "decayrec-data/warehouse.duckdb" in result.stdout
    warehouse = tmp_path / "decayrec-data" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        n_users, n_rows = con.execute(
            "select count(distinct user_id), count(*) from recommendations_latest"
        ).fetchall()[0]
    assert n_users == 2000 and n_rows == 20000


def test_run_with_events_and_a_failure_paragraph(tmp_path):
    events = tiny_events(tmp_path)
    ok = run_cli(
        "run",
        "--events",
        str(events),
        "--as-of",
        "2024-01-01",
        "--k",
        "3",
        "--warehouse",
        f"duckdb:///{tmp_path}/wh.duckdb",
        "--data-dir",
        str(tmp_path / "d"),
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from recommendations_latest").fetchall() == [(90,)]
    # the summary says what happened, in words and readable numbers
    out = ok.stdout
    assert "90 rows for 30 users (0 from the popularity fallback); published" in out
    assert f"batch {events}: 180 rows read, 180 accepted, 0 quarantined" in out
    assert "\nmodel: ease λ " in out and "\ngate: promote (no champion yet)" in out
    assert "\nuser_time: not evaluated: " in out and "\nglobal_time: " in out
    assert f"recommendations_latest): duckdb:///{tmp_path}/wh.duckdb" in out
    assert "decay_curves.png" in out.split("\nplots: ")[1]
    [stages] = [line for line in out.splitlines() if line.startswith("stages (s, ")]
    assert " validate " in stages and " export " in stages
    sample = out.split("list of user u0:\n")[1].splitlines()
    assert len(sample) == 3 and all(float(line.split()[2]) > 0 for line in sample)
    assert "None" not in out
    # the log: counts per batch and per protocol; no operator-irrelevant warnings
    err = ok.stderr
    assert f"validate {events}: 180 rows read, 180 accepted, 0 quarantined" in err
    assert "evaluate user_time: backtest of ease and popularity" in err
    assert "Sparse CSR tensor" not in err and "ephemeral docs site" not in err
    [log] = (tmp_path / "d" / "logs").glob("*-run.log")
    text = log.read_text()
    assert "np.float64" not in text and "np.float64" not in err
    [payload] = [line for line in text.splitlines() if line.startswith("summary: ")]
    facts = json.loads(payload.removeprefix("summary: "))
    assert facts["batches"][0]["accepted"] == 180 and facts["rows"] == 90
    assert facts["gate"] == {"decision": "promote", "reason": "no champion yet"}

    missing = run_cli(
        "run",
        "--events",
        str(tmp_path / "nope.csv"),
        "--data-dir",
        str(tmp_path / "d"),
        cwd=tmp_path,
    )
    assert missing.returncode == 1
    [paragraph] = [
        line for line in missing.stderr.splitlines() if line.startswith("decayrec run failed")
    ]
    assert paragraph.startswith("decayrec run failed: IngestError:")
    assert "nope.csv does not exist" in paragraph


def test_a_run_whose_source_glob_matches_nothing_fails_with_a_paragraph(tmp_path):
    """No input rows at all: the run fails at features and publishes nothing (0-row lists
    are no success). A config's glob may match nothing on a night (the lake may hold the
    events already); a glob given with --events that matches nothing is an input error
    (tests/test_cli_errors.py). Events that all come after the as-of instant:
    tests/test_run_outcomes.py."""
    data_dir = tmp_path / "d"
    config = tmp_path / "decayrec.yaml"
    config.write_text(f"sources:\n  - path: {tmp_path / 'none' / '*.csv'}\n")
    nothing = run_cli(
        "run",
        "--config",
        str(config),
        "--as-of",
        "2024-01-01",
        "--warehouse",
        f"duckdb:///{tmp_path}/wh.duckdb",
        "--data-dir",
        str(data_dir),
        cwd=tmp_path,
    )
    assert nothing.returncode == 1
    [paragraph] = [
        line for line in nothing.stderr.splitlines() if line.startswith("decayrec run failed")
    ]
    [log] = (data_dir / "logs").glob("*-run.log")
    message = (
        "decayrec run failed: NoEvents: no events before 2024-01-01T00:00:00+00:00 in the lake "
        f"({data_dir / 'lake.duckdb'}): nothing to recommend from (it holds no events at all; "
        f"no file matches the source path {tmp_path / 'none' / '*.csv'})"
    )
    assert paragraph == f"{message} (the full log, tracebacks included: {log})"
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from recommendations").fetchall() == [(0,)]
        assert con.execute(
            "select status, failed_task, error = ? from recommendation_runs",
            [message.removeprefix("decayrec run failed: NoEvents: ")],
        ).fetchall() == [("failed", "features", True)]


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    """`decayrec backfill` of two days with item-item (--model, --set), into one folder."""
    folder = tmp_path_factory.mktemp("backfill")
    events = tiny_events(folder)
    args = ["--events", str(events), "--k", "3", "--data-dir", str(folder / "d")]
    model = ["--model", "itemknn", "--set", "model.neighbours=5"]
    result = run_cli("backfill", "2024-01-01", "2024-01-02", *args, *model, cwd=folder)
    return folder, result


def test_backfill_runs_the_nightly_for_each_day_with_the_model_asked_for(backfilled):
    folder, result = backfilled
    assert result.returncode == 0, result.stderr[-2000:]
    days = result.stdout.splitlines()
    assert [d.split(" run ")[0] for d in days] == ["2024-01-01: published", "2024-01-02: published"]
    with duckdb.connect(str(folder / "d" / "warehouse.duckdb"), read_only=True) as con:
        runs = con.execute(
            "select as_of_date::varchar, model, params->>'$.model.neighbours' "
            "from recommendation_runs order by as_of_date"
        ).fetchall()
    assert runs == [("2024-01-01", "itemknn", "5"), ("2024-01-02", "itemknn", "5")]


def test_reexport_republishes_a_day_from_its_stored_model(backfilled):
    folder, _ = backfilled
    result = run_cli("reexport", "2024-01-02", "--k", "2", "--data-dir", "d", cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("re-exported 2024-01-02 as run ")
    assert "60 rows for 30 users; published: True" in result.stdout
    with duckdb.connect(str(folder / "d" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*), max(rank) from recommendations_latest").fetchall() == [
            (60, 2)
        ]


def test_the_sequence_models_epochs_are_logged_to_the_console_and_the_log_file(tmp_path):
    events = tiny_events(tmp_path)
    result = run_cli(
        "run",
        "--events",
        str(events),
        "--as-of",
        "2024-01-01",
        "--data-dir",
        str(tmp_path / "d"),
        "--model",
        "sasrec",
        "--set",
        "model.seq_epochs=2",
        "--set",
        "model.seq_dim=8",
        "--set",
        'evaluation.protocols=["global_time"]',
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [log] = (tmp_path / "d" / "logs").glob("*-run.log")
    for output in (result.stderr, log.read_text()):
        # one line per epoch (decayrec's own logger, at INFO): loss, validation, ETA
        epochs = [line for line in output.splitlines() if "sasrec epoch" in line]
        last = [line for line in epochs if "2 of 2" in line]
        assert last and "validation NDCG@10" in last[0], output[-3000:]
