"""What the reasons cost: scoring MovieLens-small with and without `explain` (the
because_items and reason of every row), per model, per 1,000 users. The models are fitted
once on the nightly's snapshot (as of 2018-10-01); each scoring is repeated and the
fastest run kept. Times are CPU seconds of this process (time.process_time, on
`--threads` torch threads): on a shared machine wall-clock times swing with the load.

    .venv/bin/python bench/reasons_cost.py [--movielens DIR] [--models ease itemknn ials]
"""

import argparse
import os
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def timed(config, model, matrix, device, explain: bool, repeats: int) -> tuple[float, float]:
    """The fastest of `repeats` scorings (seconds, and of them explaining)."""
    from decayrec.scoring.recommend import configured_lists

    runs = []
    for _ in range(repeats):
        started = time.process_time()
        lists = configured_lists(config, model, matrix, device, explain=explain)
        lists.to_arrow(matrix)  # the reason text is built here (both ways: columns kept)
        runs.append((time.process_time() - started, lists.explain_cpu_seconds))
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--movielens", default=str(root.parent / "shared/data/movielens-small"))
    parser.add_argument("--models", nargs="+", default=["ease", "itemknn", "ials"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from decayrec.config import DecayrecConfig, movielens_sources
    from decayrec.lake.features import build_snapshot
    from decayrec.lake.ingest import load_batches, stage_sources
    from decayrec.lake.matrix import load_snapshot
    from decayrec.models import make_model

    data_dir = Path(tempfile.mkdtemp(prefix="decayrec-reasons-"))
    config = DecayrecConfig(data_dir=data_dir, sources=movielens_sources(args.movielens))
    load_batches(config, stage_sources(config, "load"), "load")
    snapshot = build_snapshot(config, config.as_of_time(date(2018, 10, 1)))
    matrix = load_snapshot(snapshot)
    n_users = matrix.shape[0]
    print(
        f"MovieLens-small: {n_users} users x {matrix.shape[1]} items, k={config.k}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        "| model | CPU s / 1,000 users: without reasons | with reasons | of which explain | "
        "explain / the rest of scoring | with / without |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model_config = DecayrecConfig.model_validate(
            {**config.model_dump(), "model": {"name": name}}
        )
        model, device = make_model(model_config)
        model.fit(matrix)

        plain, _ = timed(model_config, model, matrix, device, False, args.repeats)
        explained, explaining = timed(model_config, model, matrix, device, True, args.repeats)
        per_k = 1000 / n_users
        print(
            f"| {name} | {plain * per_k:.3f} s / 1,000 users | {explained * per_k:.3f} s | "
            f"{explaining * per_k:.3f} s | {explaining / (explained - explaining):.0%} | "
            f"{explained / plain - 1:+.0%} |"
        )


if __name__ == "__main__":
    main()
