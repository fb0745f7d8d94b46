"""How fast a publish is: 1M recommendation rows (100,000 users x K=10) into the DuckDB
file warehouse and into PostgreSQL, through the same writer the nightly flow uses.

    .venv/bin/python bench/publish_speed.py [--users 100000] [--k 10] [--postgres URL]

PostgreSQL: --postgres URL, else $DECAYREC_WAREHOUSE_URL, else a throwaway local server
(decayrec_tools.pg_local, default durability settings: fsync and synchronous commit on).
For each warehouse it times four publishes of the same size: a first date into empty
tables, a second date beside it, a rerun of that date with changed scores (delete +
insert), and a rerun with identical lists (compared, nothing rewritten).
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decayrec.config import DecayrecConfig, WarehouseConfig, mask_url  # noqa: E402
from decayrec.warehouse import configured_warehouse  # noqa: E402


def make_lists(n_users: int, k: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), k)
    ranks = np.tile(np.arange(1, k + 1, dtype=np.int32), n_users)
    items = rng.integers(0, 50_000, size=n_users * k)
    scores = np.sort(rng.random((n_users, k)), axis=1)[:, ::-1].reshape(-1)
    return pa.table(
        {
            "user_id": pa.array(np.char.add("user-", users.astype(str))),
            "rank": pa.array(ranks, pa.int32()),
            "item_id": pa.array(np.char.add("item-", items.astype(str))),
            "score": pa.array(scores, pa.float64()),
            "source": pa.array(np.where(ranks > k - 2, "fallback", "model")),
        }
    )


def bench(url: str, lists: pa.Table, changed: pa.Table) -> list[tuple[str, float, bool]]:
    config = DecayrecConfig(warehouse=WarehouseConfig(history_days=30))
    warehouse = configured_warehouse(config, url)
    warehouse.ensure_schema()
    cases = [
        ("first date, empty tables", date(2024, 1, 1), lists),
        ("second date", date(2024, 1, 2), lists),
        ("rerun, changed scores", date(2024, 1, 2), changed),
        ("rerun, identical lists", date(2024, 1, 2), changed),
    ]
    out = []
    for name, as_of, table in cases:
        started = time.perf_counter()
        written = warehouse.publish(as_of, table, f"bench-{name}", "ease")
        out.append((name, time.perf_counter() - started, written))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--postgres", help="postgresql:// URL (default: a local throwaway)")
    args = parser.parse_args()
    lists = make_lists(args.users, args.k, seed=0)
    changed = lists.set_column(3, "score", pa.compute.multiply(lists["score"], 0.5))
    n = lists.num_rows
    print(f"{n:,} rows per publish ({args.users:,} users x {args.k}); {os.cpu_count()} CPUs")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["duckdb"] = bench(f"duckdb:///{tmp}/bench.duckdb", lists, changed)
    url = args.postgres or os.environ.get("DECAYREC_WAREHOUSE_URL")
    if url:
        results[f"postgresql {mask_url(url)}"] = bench(url, lists, changed)
    else:
        from decayrec_tools.pg_local import LocalPostgres

        with LocalPostgres(fast=False) as pg:
            results["postgresql (local, fsync on)"] = bench(
                pg.create_database("bench"), lists, changed
            )

    print(f"\n{'warehouse':<30} {'publish':<26} {'seconds':>8} {'rows/s':>11}  rewritten")
    for warehouse, rows in results.items():
        for name, seconds, written in rows:
            print(f"{warehouse:<30} {name:<26} {seconds:>8.2f} {n / seconds:>11,.0f}  {written}")


if __name__ == "__main__":
    main()
