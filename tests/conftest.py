"""Shared fixtures: one Prefect test harness per session, and the MovieLens data.

Tests that need ../shared fail (never skip) when it is missing.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

ROOT = Path(__file__).resolve().parents[1]
MOVIELENS = Path(os.environ.get("DECAYREC_MOVIELENS", ROOT.parent / "shared/data/movielens-small"))


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    if not (MOVIELENS / "ratings.csv").exists():
        pytest.fail(
            f"MovieLens-small is missing at {MOVIELENS} (../shared must be beside the repo)"
        )
    return MOVIELENS


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (starting one costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
