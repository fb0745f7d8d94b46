"""All of decayrec's deployments, served by one process against the configured Prefect API
(`decayrec serve`, or `python -m deployments.serve`).

    nightly      cron 0 2 * * * in config.timezone
    tune-weekly  cron 0 3 * * 0 in config.timezone
    backfill     by hand: start, end, force
    reexport     by hand: as_of, source_run_id
"""

import argparse

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from decayrec.config import DecayrecConfig, load_config
from deployments.backfill import backfill_deployment
from deployments.nightly import nightly_deployment
from deployments.reexport import reexport_deployment
from deployments.tune import tune_deployment


def all_deployments(config: DecayrecConfig | None = None) -> list[RunnerDeployment]:
    return [
        nightly_deployment(config),
        backfill_deployment(config),
        reexport_deployment(config),
        tune_deployment(config),
    ]


def serve_all(config: DecayrecConfig | None = None, limit: int | None = None) -> None:
    """Register the deployments and run their flow runs until interrupted."""
    serve(*all_deployments(config), limit=limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="YAML config file")
    args = parser.parse_args()
    serve_all(load_config(args.config))


if __name__ == "__main__":
    main()
