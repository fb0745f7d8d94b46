"""Sharded scoring on MovieLens-small: one process vs a local Dask cluster of 1 and 2
workers (prefect-dask), the same fitted EASE model, identical lists checked.

    .venv/bin/python bench/sharded_scoring.py [--movielens DIR] [--shards 4]
"""

import argparse
import os
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--movielens", default=str(root.parent / "shared/data/movielens-small"))
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    import pyarrow.parquet as pq
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from decayrec.config import DecayrecConfig, movielens_sources
    from decayrec.lake.features import build_snapshot
    from decayrec.lake.ingest import load_batches, stage_sources
    from decayrec.lake.matrix import load_snapshot
    from decayrec.scoring.lists import train_and_score
    from decayrec.scoring.recommend import recommend
    from decayrec.scoring.sharding import FittedModel, load_model
    from flows.scoring import score_sharded

    data_dir = Path(tempfile.mkdtemp(prefix="decayrec-shards-"))
    config = DecayrecConfig(data_dir=data_dir, sources=movielens_sources(args.movielens))
    load_batches(config, stage_sources(config, "load"), "load")
    snapshot = build_snapshot(config, config.as_of_time(date(2018, 10, 1)))
    single = train_and_score(config, snapshot, "single")
    # single process, scoring only (the model loaded as a shard would)
    started = time.perf_counter()
    model = load_model(single.model, single.model_path)
    matrix = load_snapshot(snapshot)
    recommend(model, matrix, config.k, min_history=config.model.min_history)
    one = time.perf_counter() - started
    print(
        f"single process: scoring {snapshot.n_users} users x {snapshot.n_items} items: {one:.2f} s"
    )
    expected = pq.read_table(single.lists_path)

    @flow
    def run(cfg, fitted):
        return score_sharded(cfg, snapshot, fitted)

    with prefect_test_harness(server_startup_timeout=120):
        for workers in (1, 2):
            o = config.orchestration.model_copy(
                update={"score_shards": args.shards, "task_runner": "dask", "dask_workers": workers}
            )
            cfg = config.model_copy(update={"orchestration": o})
            fitted = FittedModel(
                str(data_dir / "runs" / f"dask{workers}"), single.model_path, single.model, "cpu", 0
            )

            started = time.perf_counter()
            out = run(cfg, fitted)
            total = time.perf_counter() - started
            same = pq.read_table(out.lists_path).equals(expected)
            print(
                f"dask, {workers} worker(s), {args.shards} shards: {total:.2f} s end to end "
                f"(cluster start included); identical lists: {same}"
            )


if __name__ == "__main__":
    main()
