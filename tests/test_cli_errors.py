"""Every input and config error of the command line, found before a Prefect server starts:
the real `decayrec` process, one paragraph naming the problem on stderr, exit status 1."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops_data import tiny_events

ROOT = Path(__file__).resolve().parents[1]
DECAYREC = [sys.executable, "-m", "decayrec.cli"]


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    unset = ("PREFECT_API_URL", "DECAYREC_TRACEBACK")
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [*DECAYREC, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-errors")
    tiny_events(folder)
    (folder / "bad.yaml").write_text("k: 3\nevaluation:\n  protocolz: [user_time]\n")
    return folder


CASES = {
    "missing movielens dir": (
        ["run", "--movielens", "/no/such/dir"],
        "--movielens /no/such/dir: no such directory",
    ),
    "events file missing": (["run", "--events", "nope.csv"], "source file nope.csv does not exist"),
    "events glob matching nothing": (
        ["run", "--events", "none/*.csv"],
        "--events none/*.csv: no file matches this glob",
    ),
    "bad as-of": (
        ["run", "--events", "events.csv", "--as-of", "2024-13-01"],
        "--as-of '2024-13-01' is not a date YYYY-MM-DD (month must be in 1..12)",
    ),
    "invalid config field": (
        ["run", "--events", "events.csv", "--config", "bad.yaml"],
        "config file bad.yaml: evaluation.protocolz: Extra inputs are not permitted",
    ),
    "unknown model": (
        ["run", "--events", "events.csv", "--model", "lightgcn"],
        "--model lightgcn: unknown model 'lightgcn'; expected one of",
    ),
    "bad --set path": (
        ["run", "--events", "events.csv", "--model", "itemknn", "--set", "model.l2=200"],
        "--model itemknn --set model.l2=200: model.l2: Extra inputs are not permitted",
    ),
    "bad --set value": (
        ["run", "--events", "events.csv", "--set", "decay.half_life_days=soon"],
        "--set decay.half_life_days=soon: decay.half_life_days: Input should be a valid number",
    ),
    "--set without a value": (
        ["run", "--events", "events.csv", "--set", "k"],
        "--set 'k': expected KEY.PATH=VALUE",
    ),
    "bad warehouse scheme": (
        ["run", "--events", "events.csv", "--warehouse", "mysql://db/recs"],
        "unsupported warehouse URL scheme 'mysql'",
    ),
    "no source": (["run"], "no event source: give --events, --movielens or sources"),
    "backfill backwards": (
        ["backfill", "2024-01-03", "2024-01-01", "--events", "events.csv"],
        "END 2024-01-01 is before START 2024-01-03",
    ),
    "reexport bad date": (["reexport", "2024-02-30"], "AS_OF '2024-02-30' is not a date"),
}


@pytest.mark.parametrize("case", CASES)
def test_an_input_error_is_one_paragraph_before_prefect_starts(folder, case):
    args, problem = CASES[case]
    result = run_cli(*args, "--data-dir", "d", cwd=folder)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    [paragraph] = result.stderr.splitlines()  # nothing else: no server, no log line
    assert paragraph.startswith(f"decayrec {args[0]} failed: ")
    assert problem in paragraph
    assert "Traceback" not in result.stderr
    assert not (folder / "d").exists()  # no log file, lake nor warehouse was made


def test_decayrec_traceback_adds_the_trace(folder):
    result = run_cli(
        "run", "--as-of", "yesterday", "--events", "events.csv", cwd=folder, DECAYREC_TRACEBACK="1"
    )
    assert result.returncode == 1
    first, *rest = result.stderr.splitlines()
    assert first.startswith("decayrec run failed: --as-of 'yesterday' is not a date")
    assert rest[0] == "Traceback (most recent call last):" and "UsageError" in rest[-1]
    assert "temporary Prefect server" not in result.stderr


def test_the_help_lists_every_command(folder):
    result = run_cli("--help", cwd=folder)
    commands = result.stdout.split("commands:")[1]
    for name in ("run", "demo", "backfill", "reexport", "tune", "serve", "generate", "bench"):
        assert f"\n    {name} " in commands
    serve = run_cli("serve", "--help", cwd=folder).stdout
    assert "--as-of" not in serve and "--config" in serve
