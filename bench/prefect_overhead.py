"""Prefect overhead per nightly run on MovieLens-small: the nightly flow against a real
(temporary) Prefect server vs the same stages called as plain functions.

    .venv/bin/python bench/prefect_overhead.py [--movielens DIR] [--repeat 2]

Both run on the same lake (events loaded once beforehand) and the same snapshot, so the
difference is orchestration: task and flow runs, state reports, the lock, artifacts.
"""

import argparse
import os
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

AS_OF = date(2018, 10, 1)


def plain_run(config, run_id):
    from decayrec.evaluation.backtest import evaluate_all
    from decayrec.evaluation.plots import decay_report
    from decayrec.lake.features import build_snapshot, event_type_ages
    from decayrec.lake.ingest import load_batches, stage_sources
    from decayrec.scoring.lists import train_and_score
    from decayrec.warehouse import configured_warehouse
    from decayrec.warehouse.base import RunOutcome

    t = config.as_of_time(AS_OF)
    wh = configured_warehouse(config)
    wh.ensure_schema()
    wh.start_run(run_id, AS_OF, str(config.model.name), config.model_dump(mode="json"))
    load_batches(config, stage_sources(config, run_id), run_id)
    snapshot = build_snapshot(config, t)
    trained = train_and_score(config, snapshot, run_id)
    ages = event_type_ages(config, t)
    decay_report(config.decay, f"{snapshot.path}/user_decay.parquet", trained.run_dir, ages)
    metrics = evaluate_all(config, t)
    import pyarrow.parquet as pq

    wh.publish(AS_OF, pq.read_table(trained.lists_path), run_id, trained.model)
    wh.finish_run(run_id, RunOutcome(status="succeeded", metrics=metrics))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--movielens", default=str(root.parent / "shared/data/movielens-small"))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    from decayrec.config import DecayrecConfig, movielens_sources

    data_dir = Path(tempfile.mkdtemp(prefix="decayrec-overhead-"))
    config = DecayrecConfig(
        data_dir=data_dir, sources=movielens_sources(args.movielens), use_tuned=False
    )
    plain_run(config, "warmup")  # loads the events and writes the snapshot once
    plain = []
    for i in range(args.repeat):
        started = time.perf_counter()
        plain_run(config, f"plain-{i}")
        plain.append(time.perf_counter() - started)
    with prefect_test_harness(server_startup_timeout=120):
        from flows.nightly import nightly

        nightly(as_of=AS_OF, config=config)  # first flow run: imports, server warm-up
        flow = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            nightly(as_of=AS_OF, config=config)
            flow.append(time.perf_counter() - started)
    p, f = min(plain), min(flow)
    print(f"plain functions: {p:.2f} s per run (best of {args.repeat}: {plain})")
    print(f"nightly flow, Prefect server: {f:.2f} s per run (best of {args.repeat}: {flow})")
    print(f"Prefect overhead: {f - p:+.2f} s per run ({(f - p) / p:+.1%})")


if __name__ == "__main__":
    main()
