"""Shared fixtures: one Prefect test harness per session, and the MovieLens data.

Tests that need ../shared fail (never skip) when it is missing.
"""

import os
from pathlib import Path

import pytest

from tests.warehouses import SCHEMA, WarehouseTarget

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

ROOT = Path(__file__).resolve().parents[1]
MOVIELENS = Path(os.environ.get("DECAYREC_MOVIELENS", ROOT.parent / "shared/data/movielens-small"))


# The inner loop is `pytest -m "not slow"`; CI runs everything. A test is slow when it runs
# a Prefect flow or server, reads MovieLens, or drives the CLI in subprocesses.
SLOW_FIXTURES = {"prefect_harness", "movielens_dir", "ratings_lake"}
SLOW_MODULES = {
    "test_cli",
    "test_cli_errors",
    "test_faults",
    "test_prefect_server",
    "test_warehouse_reader_lock",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    if not (MOVIELENS / "ratings.csv").exists():
        pytest.fail(
            f"MovieLens-small is missing at {MOVIELENS} (../shared must be beside the repo)"
        )
    return MOVIELENS


@pytest.fixture(scope="session")
def ratings_lake(tmp_path_factory, movielens_dir):
    """A lake of every MovieLens-small rating (tags left out, as the yardstick compares),
    the default configuration with the user-time protocol: what the project's backtest
    splits itself."""
    from decayrec.config import DecayrecConfig, EvaluationConfig, movielens_sources
    from decayrec.lake.ingest import load_batches, stage_sources

    ratings = [s for s in movielens_sources(movielens_dir) if s.event_type == "rating"]
    config = DecayrecConfig(
        data_dir=tmp_path_factory.mktemp("ratings-lake"),
        sources=ratings,
        evaluation=EvaluationConfig(protocols=["user_time"]),
    )
    load_batches(config, stage_sources(config, "ratings"), "ratings")
    return config


@pytest.fixture(scope="session")
def movielens_nightly(tmp_path_factory, movielens_dir, prefect_harness):
    """One default nightly flow run on MovieLens-small (as of 2018-10-01, k 10, both
    protocols) into a DuckDB warehouse beside its lake: (config, warehouse path, result).
    Shared by test_nightly_flow, which reruns the day and adds a failed run (the lists
    stay as published), and test_warehouse_flow, which compares PostgreSQL's to them."""
    from datetime import date

    from decayrec.config import DecayrecConfig, movielens_sources
    from flows.nightly import nightly

    data_dir = tmp_path_factory.mktemp("nightly")
    config = DecayrecConfig(data_dir=data_dir, sources=movielens_sources(movielens_dir), k=10)
    result = nightly(as_of=date(2018, 10, 1), config=config)
    return config, data_dir / "warehouse.duckdb", result


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (starting one costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (decayrec_tools.pg_local: initdb in a temp dir,
    127.0.0.1 on a free port, a role with a password). Fails, never skips, when it cannot
    start: scripts/setup.sh installs PostgreSQL."""
    from decayrec_tools.pg_local import LocalPostgres

    server = LocalPostgres()
    try:
        server.start()
    except Exception as exc:
        server.stop()
        pytest.fail(f"could not start PostgreSQL for the tests: {exc}")
    yield server
    server.stop()


_databases = iter(range(1, 1_000_000))


@pytest.fixture()
def postgres_url(postgres_server) -> str:
    """The URL (password included) of a new empty database on the session's server."""
    return postgres_server.create_database(f"test_{next(_databases)}")


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse_url(request, tmp_path) -> str:
    """One empty warehouse of each kind: every warehouse test runs against both."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path}/warehouse.duckdb"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=["duckdb", "postgresql", f"postgresql-{SCHEMA}"])
def warehouse_target(request, tmp_path) -> WarehouseTarget:
    """One empty warehouse of each kind, PostgreSQL twice: in the default schema (public)
    and in schema recs (warehouse.schema_name); the tests of the warehouse flow run on
    all three."""
    if request.param == "duckdb":
        return WarehouseTarget(f"duckdb:///{tmp_path}/warehouse.duckdb")
    schema = SCHEMA if request.param.endswith(SCHEMA) else None
    return WarehouseTarget(request.getfixturevalue("postgres_url"), schema)
