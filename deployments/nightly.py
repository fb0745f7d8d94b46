"""The nightly deployment: the nightly flow on a cron at 02:00 in the configured timezone.

    python -m deployments.nightly [--config decayrec.yaml]   # serve it against PREFECT_API_URL

Only a non-default config is stored with the deployment; every default stays in
DecayrecConfig, so the UI form shows the model's own defaults and descriptions.
"""

import argparse

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from decayrec.config import DecayrecConfig, load_config
from flows.nightly import nightly

NIGHTLY_CRON = "0 2 * * *"


def nightly_deployment(config: DecayrecConfig | None = None) -> RunnerDeployment:
    """The deployment object; the schedule's timezone is config.timezone (DST-aware)."""
    config = config or DecayrecConfig()
    parameters = {}
    if config != DecayrecConfig():
        parameters["config"] = config.model_dump(mode="json", exclude_defaults=True)
    return nightly.to_deployment(
        name="nightly",
        schedules=[Cron(NIGHTLY_CRON, timezone=config.timezone)],
        parameters=parameters,
        description="Publish every user's top-K list for today's as-of date.",
        tags=["decayrec"],
        concurrency_limit=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="YAML config file")
    args = parser.parse_args()
    serve(nightly_deployment(load_config(args.config)))


if __name__ == "__main__":
    main()
