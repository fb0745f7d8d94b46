"""The per-user decay parameters of each run are in the warehouse, for analysts."""

from datetime import date

import duckdb
import pyarrow as pa

from tests.warehouses import open_url


def test_user_decay_params_are_replaced_per_run(tmp_path):
    warehouse = open_url(f"duckdb:///{tmp_path}/wh.duckdb")
    warehouse.ensure_schema()
    table = pa.table(
        {
            "user_id": ["a", "b"],
            "memory": [0.5, 2.0],
            "drift": pa.array([0.4, None], pa.float64()),
            "half_life_days": [182.5, 730.0],
        }
    )
    warehouse.record_user_decay("run-1", date(2024, 1, 1), table)
    warehouse.record_user_decay("run-1", date(2024, 1, 1), table)  # a retry replaces
    warehouse.record_user_decay("run-2", date(2024, 1, 2), table.slice(0, 1))
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select run_id, as_of_date, user_id, memory, drift, half_life_days "
            "from user_decay_params order by run_id, user_id"
        ).fetchall()
    assert rows == [
        ("run-1", date(2024, 1, 1), "a", 0.5, 0.4, 182.5),
        ("run-1", date(2024, 1, 1), "b", 2.0, None, 730.0),
        ("run-2", date(2024, 1, 2), "a", 0.5, 0.4, 182.5),
    ]
