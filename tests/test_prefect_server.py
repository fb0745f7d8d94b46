"""A real Prefect server on loopback, the deployments served by `decayrec serve`, and a
nightly run triggered through the API as the UI does it."""

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml
from ops_data import write_movielens_subset

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={k: v for k, v in env.items() if k != "PREFECT_API_URL"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def healthy():
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 120, "the Prefect server's /api/health")
        yield url, env
    finally:
        stop(proc)


def test_nightly_deployment_runs_when_triggered_through_the_api(server, movielens_dir, tmp_path):
    url, env = server
    subset = write_movielens_subset(movielens_dir, tmp_path / "ml600")
    data_dir = tmp_path / "data"
    config_file = tmp_path / "decayrec.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(data_dir),
                "timezone": "Europe/Berlin",
                "use_tuned": False,
                "evaluation": {"protocols": ["user_time"]},
                "sources": [
                    {
                        "path": str(subset / "ratings.csv"),
                        "format": "csv",
                        "columns": {
                            "user_id": "userId",
                            "item_id": "movieId",
                            "event_ts": "timestamp",
                            "event_type": None,
                            "value": "rating",
                        },
                        "event_type": "rating",
                        "timestamp_unit": "s",
                    }
                ],
            }
        )
    )
    log = open(tmp_path / "serve.log", "w")
    serving = subprocess.Popen(
        [str(BIN / "decayrec"), "serve", "--config", str(config_file)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    try:
        with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:

            def deployment(name):
                try:
                    return client.read_deployment_by_name(name)
                except Exception:
                    return None

            nightly = wait_for(lambda: deployment("nightly/nightly"), 120, "the deployments")
            backfill = wait_for(lambda: deployment("backfill/backfill"), 30, "backfill")
            # serve registers the deployments one after another: wait for each
            wait_for(lambda: deployment("reexport/reexport"), 30, "reexport")
            wait_for(lambda: deployment("tune/tune-weekly"), 30, "tune")

            [schedule] = nightly.schedules
            assert schedule.schedule.cron == "0 2 * * *"
            assert schedule.schedule.timezone == "Europe/Berlin"
            form = nightly.parameter_openapi_schema
            assert set(form["properties"]) == {"as_of", "config"}
            assert "DecayrecConfig" in form["definitions"]
            bf = backfill.parameter_openapi_schema
            assert bf["required"] == ["start", "end"]
            assert bf["properties"]["start"]["format"] == "date"
            assert bf["properties"]["force"]["default"] is False
            assert (
                "rerun days that are already published" in bf["properties"]["force"]["description"]
            )

            # what the UI's "Run" button does: a flow run of the deployment with parameters
            run = client.create_flow_run_from_deployment(
                nightly.id, parameters={"as_of": "2018-10-01"}
            )
            late = client.create_flow_run_from_deployment(
                nightly.id,
                parameters={"as_of": "2018-10-02"},
                state=Scheduled(scheduled_time=datetime.now(UTC) - timedelta(hours=7)),
            )

            def final(run_id):
                state = client.read_flow_run(run_id).state
                return state if state and state.is_final() else None

            assert wait_for(lambda: final(run.id), 300, "the nightly run").is_completed()
            assert wait_for(lambda: final(late.id), 120, "the late run").is_completed()
            # the runs list names each run by its as-of date
            names = [client.read_flow_run(r.id).name for r in (run, late)]
            assert names == ["nightly-2018-10-01", "nightly-2018-10-02"]
    finally:
        stop(serving)
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        runs = dict(con.execute("select run_id, status from recommendation_runs").fetchall())
        assert runs == {str(run.id): "succeeded", str(late.id): "skipped"}
        rows = con.execute(
            "select as_of_date, count(distinct user_id), max(rank) from recommendations "
            "group by all"
        ).fetchall()
    assert [(str(d), k) for d, _, k in rows] == [("2018-10-01", 10)] and rows[0][1] == 608
