"""The nightly's fit and scoring sharded by user on a local Dask cluster vs one process.

Synthetic events of `decayrec bench` (the same generator and catalogue size), one lake,
one snapshot; then

* one process: `train_and_score` (fit + every user's list) in a fresh child process;
* Dask, `--workers` worker processes of one thread: the features by user shards
  (`shard_interactions`, the reduce in `build_snapshot`), the map (`shard_sums`, one task per
  shard), the reduce and item-side solve (`fit_from_shards`, on a worker), the scoring
  shards (`score_shard`) and the merge - the path `orchestration.task_runner: dask` runs.

It prints each phase's seconds, the peak RSS of each worker process and of the one
process, the bytes each shard ships to the reduce, and checks that the lists agree
(items and ranks identical, the largest relative score difference).

    nice -n 19 .venv/bin/python bench/distributed_nightly.py --events 1000000 --workers 2
"""

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

AS_OF = date(2026, 1, 1)


def one_process(config, snapshot) -> tuple[float, float, str]:
    """train_and_score in this (fresh) process: seconds, peak RSS MiB, the lists' path."""
    from decayrec.scoring.distributed import peak_rss_mb
    from decayrec.scoring.lists import train_and_score

    started = time.perf_counter()
    trained = train_and_score(config, snapshot, "one-process")
    return time.perf_counter() - started, peak_rss_mb(), trained.lists_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=None, help="default: --workers")
    parser.add_argument("--model", default="ease")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--items", type=int, default=None, help="catalogue size (default: as decayrec bench)"
    )
    parser.add_argument("--out", default=None, help="default: a new temporary folder")
    args = parser.parse_args()
    n_shards = args.shards or args.workers

    import numpy as np
    import pyarrow.parquet as pq
    from distributed import Client, LocalCluster

    from decayrec.lake.features import build_snapshot, shard_interactions
    from decayrec.lake.ingest import load_batches, stage_sources
    from decayrec.scoring.distributed import fit_from_shards, peak_rss_mb, plan_fit, shard_sums
    from decayrec.scoring.sharding import ShardPlan, merge_shards, score_shard
    from decayrec_tools.bench import bench_config, bench_events

    out = Path(args.out or tempfile.mkdtemp(prefix="decayrec-distributed-"))
    events = bench_events(args.events, args.seed, n_items=args.items)
    config = bench_config(out, events["path"], model=args.model)
    started = time.perf_counter()
    load_batches(config, stage_sources(config, "load"), "load")
    lake_s = time.perf_counter() - started
    as_of = config.as_of_time(AS_OF)
    snapshot = build_snapshot(config, as_of)
    print(
        f"{events['n_events']:,} events, {snapshot.n_users:,} users x {snapshot.n_items:,} "
        f"items ({snapshot.n_nonzero:,} pairs): lake {lake_s:.1f} s, features in one "
        f"process {time.perf_counter() - started - lake_s:.1f} s"
    )
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        single_s, single_rss, single_path = pool.submit(one_process, config, snapshot).result()
    print(f"one process: fit + score {single_s:.1f} s, peak RSS {single_rss:,.0f} MiB")

    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    with cluster, Client(cluster) as client:
        shards = list(range(n_shards))
        shutil.rmtree(snapshot.path)  # built again, by user shards
        began = time.perf_counter()

        def interactions(out_dir: Path) -> list[Path]:
            args_ = ([config] * n_shards, [as_of] * n_shards, shards, [n_shards] * n_shards)
            return client.gather(client.map(shard_interactions, *args_, [out_dir] * n_shards))

        assert build_snapshot(config, as_of, interactions).snapshot_id == snapshot.snapshot_id
        print(f"dask features by {n_shards} user shards: {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        plan = plan_fit(config, snapshot, n_shards, str(out / "shards"))
        if plan is None:
            raise SystemExit(f"{args.model} is not fitted by sums over users")
        parts = client.gather(
            client.map(shard_sums, [config] * n_shards, [plan] * n_shards, shards)
        )
        mapped = time.perf_counter()
        fitted = client.submit(fit_from_shards, config, plan, parts, "dask").result()
        reduced = time.perf_counter()
        score_plan = ShardPlan(snapshot, fitted, n_shards, str(out / "shards"))
        lists = client.gather(
            client.map(score_shard, [config] * n_shards, [score_plan] * n_shards, shards)
        )
        merged = merge_shards(fitted, lists, time.perf_counter() - reduced)
        done = time.perf_counter()
        worker_rss = client.run(peak_rss_mb)
    print(
        f"dask, {args.workers} workers, {n_shards} shards: {done - began:.1f} s = map "
        f"{mapped - began:.1f} s + reduce/solve {reduced - mapped:.1f} s + score/merge "
        f"{done - reduced:.1f} s (cluster start not counted)"
    )
    for worker, rss in sorted(worker_rss.items()):
        print(f"  worker {worker}: peak RSS {rss:,.0f} MiB")
    for part in parts:
        print(
            f"  shard {part.shard}: {part.n_users:,} users, map {part.seconds:.1f} s, ships "
            f"{part.n_bytes / 2**20:,.0f} MiB of sums to the reduce"
        )
    model_mib = Path(fitted.model_path).stat().st_size / 2**20
    print(f"  the fitted model each scoring shard reads: {model_mib:,.0f} MiB")
    one, got = pq.read_table(single_path), pq.read_table(merged.lists_path)
    same = all(one[c].equals(got[c]) for c in ("user_id", "rank", "item_id", "source"))
    differ = np.flatnonzero(one["item_id"].to_numpy(False) != got["item_id"].to_numpy(False))
    a, b = one["score"].to_numpy(), got["score"].to_numpy()
    if len(differ):  # float32 sums in another order can swap near-tied items
        gap = np.abs(a[differ] - b[differ]) / np.maximum(np.abs(a[differ]), 1e-12)
        print(f"  {len(differ)} rows hold another item; their scores differ by <= {gap.max():.1e}")
    worst = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12))) if len(a) else 0.0
    print(
        f"lists: {got.num_rows:,} rows; items and ranks identical: {same}; "
        f"max rel score diff {worst:.1e}"
    )


if __name__ == "__main__":
    main()
