"""All of decayrec's deployments, served by one process against the configured Prefect API
(`decayrec serve`, or `python -m deployments.serve`).

    nightly      cron 0 2 * * * in config.timezone
    tune-weekly  cron 0 3 * * 0 in config.timezone
    backfill     by hand: start, end, force
    reexport     by hand: as_of, source_run_id
"""

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from decayrec.config import DecayrecConfig
from deployments import config_from_args
from deployments.backfill import BACKFILL
from deployments.nightly import NIGHTLY
from deployments.reexport import REEXPORT
from deployments.tune import TUNE

DEPLOYMENTS = [NIGHTLY, BACKFILL, REEXPORT, TUNE]


def all_deployments(config: DecayrecConfig | None = None) -> list[RunnerDeployment]:
    return [deployment.build(config) for deployment in DEPLOYMENTS]


def serve_all(config: DecayrecConfig | None = None, limit: int | None = None) -> None:
    """Register the deployments and run their flow runs until interrupted."""
    serve(*all_deployments(config), limit=limit)


if __name__ == "__main__":
    serve_all(config_from_args(__doc__))
