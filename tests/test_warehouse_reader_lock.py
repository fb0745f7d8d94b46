"""An analyst's session holding the DuckDB warehouse open (another process) locks the
file: the warehouse retries, then fails with one paragraph naming the file."""

import subprocess
import sys
import time

import duckdb
import pytest

from decayrec.warehouse.errors import WarehouseUnavailable
from tests.warehouses import open_url

HOLD = (
    "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); "
    "print('open', flush=True); time.sleep(float(sys.argv[2]))"
)


def hold_open(path, seconds: float) -> subprocess.Popen:
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout.readline().strip() == "open"
    return reader


@pytest.fixture()
def warehouse_file(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    return path


def test_a_reader_that_stays_gives_a_clear_error(warehouse_file):
    reader = hold_open(warehouse_file, 30)
    try:
        warehouse = open_url(
            f"duckdb:///{warehouse_file}", connect_retries=2, retry_backoff_seconds=0.1
        )
        with pytest.raises(WarehouseUnavailable) as caught:
            warehouse.ensure_schema()
        message = str(caught.value)
        assert str(warehouse_file) in message and "held open by another process" in message
        assert "3 attempts" in message
    finally:
        reader.kill()
        reader.wait()


def test_a_reader_that_leaves_is_waited_for(warehouse_file):
    reader = hold_open(warehouse_file, 0.5)
    started = time.monotonic()
    warehouse = open_url(
        f"duckdb:///{warehouse_file}", connect_retries=4, retry_backoff_seconds=0.3
    )
    warehouse.ensure_schema()
    assert time.monotonic() - started >= 0.2  # it did wait for the reader
    reader.wait()
    with duckdb.connect(str(warehouse_file), read_only=True) as con:
        assert con.execute("select count(*) from schema_migrations").fetchall()[0][0] >= 1
