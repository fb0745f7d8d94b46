"""The nightly flow publishing to PostgreSQL (in public and in a schema of its own): the same
lists as DuckDB on MovieLens-small, a publish that fails midway, an unreachable server, and
a password that shows nowhere."""

import json
import logging
from datetime import date
from pathlib import Path

import duckdb
import psycopg
import pytest

from decayrec.config import DecayrecConfig, EvaluationConfig, SourceConfig, movielens_sources
from decayrec.warehouse.errors import InjectedFailure
from decayrec.warehouse.queries import run_query
from decayrec_tools.pg_local import free_port
from flows.nightly import nightly
from tasks.ops import LockUnavailable
from tests.ops_data import tiny_events
from tests.warehouses import WarehouseTarget, open_url

AS_OF = date(2018, 10, 1)
LIST_QUERY = "select user_id, rank, item_id, score, source from recommendations order by 1, 2"


@pytest.fixture(scope="module")
def both(tmp_path_factory, movielens_dir, movielens_nightly, postgres_server):
    """The MovieLens nightly into a DuckDB file (conftest's, shared with test_nightly_flow)
    and one into PostgreSQL (URL from the environment) from a lake of its own, with the
    user-time protocol alone: the protocols never change the lists. (A run into a schema
    of its own would add half again to this setup: the flow into schema recs is tested on
    tiny data below and in test_warehouse_schema.)"""
    _, duckdb_warehouse, to_duckdb = movielens_nightly
    config = DecayrecConfig(
        data_dir=tmp_path_factory.mktemp("parity"),
        sources=movielens_sources(movielens_dir),
        k=10,
        evaluation=EvaluationConfig(protocols=["user_time"]),
    )
    pg = WarehouseTarget(postgres_server.create_database("movielens_parity"))
    with pytest.MonkeyPatch.context() as env:
        to_postgres = nightly(as_of=AS_OF, config=pg.publishing(config, env))
    return duckdb_warehouse, pg.url, to_duckdb, to_postgres


def test_movielens_lists_are_identical_in_duckdb_and_postgresql(both):
    duckdb_warehouse, pg_url, to_duckdb, to_postgres = both
    assert to_duckdb["published"] is True and to_postgres["published"] is True
    with duckdb.connect(str(duckdb_warehouse), read_only=True) as con:
        from_duckdb = con.execute(LIST_QUERY).fetchall()
    with psycopg.connect(pg_url) as con:
        from_postgres = con.execute(LIST_QUERY).fetchall()
        latest = con.execute(
            "select count(distinct user_id), count(*), min(as_of_date), max(as_of_date) "
            "from recommendations_latest"
        ).fetchone()
    assert len(from_duckdb) == 6100
    assert from_postgres == from_duckdb  # same users, ranks, items, sources and scores
    assert latest == (610, 6100, AS_OF, AS_OF)


def test_postgresql_run_history_holds_the_metrics(both):
    _, pg_url, _, to_postgres = both
    history = run_query(open_url(pg_url), "metric_history").to_pylist()
    assert [r["run_id"] for r in history] == [to_postgres["run_id"]]
    [run] = history
    assert run["n_eval_users"] == 608 and run["n_rows"] == 6100
    assert run["model_ndcg"] > run["popularity_ndcg"] > 0
    with psycopg.connect(pg_url) as con:
        params, stages = con.execute(
            "select params::text, stage_seconds from recommendation_runs"
        ).fetchone()
    assert "export" in stages and "DECAYREC_WAREHOUSE_URL" in params  # the variable's name only
    assert pg_url.split("@")[0].split(":")[-1] not in params


def small_config(tmp_path: Path) -> DecayrecConfig:
    return DecayrecConfig(
        data_dir=tmp_path / "data",
        sources=[SourceConfig(path=str(tiny_events(tmp_path)))],
        k=3,
        evaluation=EvaluationConfig(protocols=["user_time"]),
    )


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(self.format(record))


@pytest.fixture()
def all_logs():
    handler = Captured()
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.text
    for logger in loggers:
        logger.removeHandler(handler)


def _flow_run_records(run_ids: list[str]) -> str:
    """What Prefect stored about the runs: parameters, state messages, artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    texts = []
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            run = client.read_flow_run(run_id)
            texts.append(json.dumps(run.parameters, default=str))
            texts.append(str(run.state.message if run.state else ""))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
        )
        texts += [json.dumps(a.data, default=str) for a in artifacts]
    return "\n".join(texts)


def _latest(wh):
    return wh.query(
        "select as_of_date, user_id, rank, item_id, run_id from recommendations_latest "
        "order by user_id, rank"
    ).to_pylist()


def test_a_publish_failing_after_staging_leaves_yesterday_live_and_a_rerun_publishes(
    warehouse_target, tmp_path, prefect_harness, monkeypatch, capfd, all_logs
):
    config = warehouse_target.publishing(small_config(tmp_path), monkeypatch)
    wh = warehouse_target.open()
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    first = nightly(as_of=d1, config=config)
    assert first["published"] is True
    before = _latest(wh)
    assert len(before) == 90 and {r["as_of_date"] for r in before} == {d1}

    drill = config.model_copy(
        update={"warehouse": config.warehouse.model_copy(update={"fail_after_staging": True})}
    )
    with pytest.raises(InjectedFailure, match="injected failure after staging 90 rows"):
        nightly(as_of=d2, config=drill)
    assert _latest(wh) == before
    runs = wh.query(
        "select as_of_date, status, failed_task, error from recommendation_runs order by started_at"
    ).to_pylist()
    assert [(r["as_of_date"], r["status"], r["failed_task"]) for r in runs] == [
        (d1, "succeeded", None),
        (d2, "failed", "export"),
    ]
    assert "injected failure after staging" in runs[1]["error"]

    rerun = nightly(as_of=d2, config=config)
    assert rerun["published"] is True
    after = _latest(wh)
    assert len(after) == 90 and {(r["as_of_date"], r["run_id"]) for r in after} == {
        (d2, rerun["run_id"])
    }

    if warehouse_target.postgresql:
        # the password is nowhere: logs, terminal, run records, Prefect's records, files
        password = warehouse_target.url.split("@")[0].split(":")[-1]
        captured = capfd.readouterr()
        assert password not in captured.out + captured.err + "\n".join(all_logs)
        records = wh.query("select * from recommendation_runs").to_pylist()
        assert password not in json.dumps(records, default=str)
        run_ids = [r["run_id"] for r in records]  # the failed run's too
        assert len(run_ids) == 3 and password not in _flow_run_records(run_ids)
        for path in config.data_dir.rglob("*"):
            if path.is_file():
                assert password.encode() not in path.read_bytes(), path


def test_an_unreachable_postgres_fails_the_run_clearly_and_the_failure_is_recorded(
    tmp_path, prefect_harness, postgres_server, monkeypatch, capfd, all_logs
):
    password = postgres_server.password
    url = f"postgresql://decayrec:{password}@127.0.0.1:{free_port()}/decayrec"
    monkeypatch.setenv("DECAYREC_WAREHOUSE_URL", url)
    config = small_config(tmp_path)
    config = config.model_copy(
        update={
            "warehouse": config.warehouse.model_copy(
                update={"connect_retries": 2, "retry_backoff_seconds": 0.1}
            )
        }
    )
    with pytest.raises(LockUnavailable) as info:  # the run lock is the warehouse's
        nightly(as_of=date(2024, 1, 1), config=config)
    message = str(info.value)
    assert "decayrec:***@127.0.0.1" in message
    assert "is unreachable: 3 connection attempts failed" in message
    [record_path] = list((config.data_dir / "runs").glob("*/run_record.json"))
    record = json.loads(record_path.read_text())
    assert record["status"] == "failed" and record["failed_task"] == "lock"
    assert "is unreachable" in record["error"] and record["warehouse"].endswith("/decayrec")
    # nothing was ingested or published: the run stopped before its first stage
    assert not (config.data_dir / "snapshots").exists()
    captured = capfd.readouterr()
    outputs = [message, record_path.read_text(), captured.out, captured.err, *all_logs]
    everything = "\n".join(outputs)
    assert password not in everything
    assert "***" in "\n".join(all_logs)  # the failure was logged, masked


def test_the_url_can_come_from_a_prefect_secret_block(tmp_path, prefect_harness, postgres_url):
    from prefect.blocks.system import Secret

    Secret(value=postgres_url).save("decayrec-test-warehouse", overwrite=True)
    config = small_config(tmp_path).model_copy(
        update={
            "warehouse": DecayrecConfig().warehouse.model_copy(
                update={"secret_block": "decayrec-test-warehouse"}
            )
        }
    )
    assert config.resolved_warehouse_url == postgres_url
    assert "decayrec-test-warehouse" in config.model_dump_json()
    assert postgres_url not in config.model_dump_json()
