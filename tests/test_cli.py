"""The `decayrec` command as an operator runs it (a real process, a real Prefect run)."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb

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
