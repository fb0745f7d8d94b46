"""A PostgreSQL warehouse in its own schema (warehouse.schema_name = recs): every door a
run goes through (publish, the failure hook, the late-start skip, backfill's published
days, reexport, the run artifacts, `decayrec sql`) reads and writes `recs`, and `public`
never gets a decayrec table."""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from decayrec.cli import main as cli_main
from decayrec.config import DecayrecConfig, EvaluationConfig, SourceConfig
from decayrec.warehouse import configured_warehouse
from decayrec.warehouse.errors import InjectedFailure
from flows.backfill import backfill
from flows.nightly import nightly
from flows.reexport import reexport
from tasks.artifacts import metrics_rows
from tests.ops_data import tiny_events
from tests.warehouses import SCHEMA, WarehouseTarget

D1, D2, D3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)


@pytest.fixture(scope="module")
def published(tmp_path_factory, prefect_harness, postgres_server):
    """One nightly run of D1 into schema recs; the URL (with its password) comes from the
    environment, as a config holding a password is refused."""
    folder = tmp_path_factory.mktemp("schema")
    pg_url = postgres_server.create_database("warehouse_schema")
    config = DecayrecConfig(
        data_dir=folder / "data",
        sources=[SourceConfig(path=str(tiny_events(folder)))],
        k=3,
        evaluation=EvaluationConfig(protocols=["user_time"]),
    )
    with pytest.MonkeyPatch.context() as env:
        config = WarehouseTarget(pg_url, SCHEMA).publishing(config, env)
        first = nightly(as_of=D1, config=config)
        yield pg_url, config, first


def rows(pg_url: str, query: str, params: Any = None) -> list[tuple]:
    with psycopg.connect(pg_url) as con:
        return con.execute(query, params).fetchall()


def tables_in(pg_url: str, schema: str) -> set[str]:
    found = rows(
        pg_url,
        "select table_name from information_schema.tables where table_schema = %s",
        [schema],
    )
    return {name for (name,) in found}


def assert_only_in_recs(pg_url: str) -> None:
    assert {"recommendations", "recommendation_runs", "schema_migrations"} <= tables_in(
        pg_url, SCHEMA
    )
    assert tables_in(pg_url, "public") == set()


def run_row(pg_url: str, run_id: str) -> tuple:
    [row] = rows(
        pg_url,
        "select as_of_date, status, failed_task, error, metrics::text "
        "from recs.recommendation_runs where run_id = %s",
        [run_id],
    )
    return row


def test_nightly_publishes_into_the_configured_schema(published):
    pg_url, _, first = published
    assert first["published"] is True
    assert rows(pg_url, "select as_of_date, count(*) from recs.recommendations group by 1") == [
        (D1, 90)
    ]
    assert run_row(pg_url, first["run_id"])[:2] == (D1, "succeeded")
    assert_only_in_recs(pg_url)


def test_a_failed_run_is_recorded_in_the_configured_schema(published):
    pg_url, config, _ = published
    drill = config.model_copy(
        update={"warehouse": config.warehouse.model_copy(update={"fail_after_staging": True})}
    )
    with pytest.raises(InjectedFailure):
        nightly(as_of=D2, config=drill)
    [(run_id,)] = rows(
        pg_url, "select run_id from recs.recommendation_runs where as_of_date = %s", [D2]
    )
    as_of, status, failed_task, error, _ = run_row(pg_url, run_id)
    assert (as_of, status, failed_task) == (D2, "failed", "export")
    assert "injected failure after staging" in error
    # the on_failure hook ran too: it read the run from recs and created nothing in public
    assert_only_in_recs(pg_url)


def test_a_source_that_does_not_exist_is_recorded_in_the_configured_schema(published, tmp_path):
    pg_url, config, _ = published
    missing = config.model_copy(
        update={"sources": [SourceConfig(path=str(tmp_path / "no-such-events.csv"))]}
    )
    with pytest.raises(Exception):  # noqa: B017 - the record is what is checked
        nightly(as_of=D3, config=missing)
    [(status, failed_task)] = rows(
        pg_url,
        "select status, failed_task from recs.recommendation_runs where as_of_date = %s",
        [D3],
    )
    assert status == "failed" and failed_task
    assert_only_in_recs(pg_url)


def test_a_late_deployment_run_records_its_skip_in_the_configured_schema(published):
    """A flow run of a deployment scheduled two days ago, run as a worker runs it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    pg_url, config, _ = published
    slot = datetime.now(UTC) - timedelta(days=2)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(nightly)
        deployment_id = client.create_deployment(flow_id=flow_id, name="schema-late")
        flow_run = client.create_flow_run_from_deployment(
            deployment_id,
            parameters={"config": config.model_dump(mode="json")},
            state=Scheduled(scheduled_time=slot),
        )
    result = run_flow(nightly, flow_run=flow_run, return_type="result")
    assert result["status"] == "skipped"
    as_of, status, _, error, _ = run_row(pg_url, str(flow_run.id))
    assert status == "skipped" and "after its scheduled slot" in error
    assert as_of == slot.astimezone(ZoneInfo(config.timezone)).date()  # the slot's night
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run.id).state.type == StateType.COMPLETED
    assert_only_in_recs(pg_url)


def test_backfill_sees_the_days_published_in_the_configured_schema(published):
    pg_url, config, _ = published
    result = backfill(start=D1, end=D1, config=config)
    assert result["days"] == [
        {"as_of": D1.isoformat(), "outcome": "skipped", "detail": "published"}
    ]
    assert_only_in_recs(pg_url)


def test_reexport_reads_and_publishes_in_the_configured_schema(published):
    pg_url, config, first = published
    # another k, so the republished lists differ from the stored run's
    result = reexport(as_of=D1, config=config.model_copy(update={"k": 2}))
    assert result["metrics"] == {"reexport_of": first["run_id"]}
    assert result["published"] is True
    assert run_row(pg_url, result["run_id"])[:2] == (D1, "succeeded")
    latest = rows(
        pg_url,
        "select as_of_date, run_id, count(*) from recs.recommendations_latest group by 1, 2",
    )
    assert latest == [(D1, result["run_id"], 60)]
    assert_only_in_recs(pg_url)


def test_run_artifacts_read_the_runs_of_the_configured_schema(published):
    pg_url, config, first = published
    table = metrics_rows(config, first["run_id"])
    assert table[0]["run"] == "this run " + first["run_id"][:8]
    assert table[0]["as_of"] == D1.isoformat() and table[0]["published"] is True
    assert table[0]["model"] == "ease" and table[0]["users"] == 30
    assert configured_warehouse(config).schema_version() > 0
    assert_only_in_recs(pg_url)


def test_the_sql_command_queries_the_configured_schema(published, tmp_path, capsys):
    pg_url, _, first = published
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"warehouse:\n  schema_name: {SCHEMA}\n")
    code = cli_main(["sql", "metric_history", "--config", str(config_file)])
    out = capsys.readouterr().out
    assert code == 0 and first["run_id"] in out
    assert_only_in_recs(pg_url)
