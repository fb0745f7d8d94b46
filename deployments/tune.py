"""The weekly tune deployment: Sundays 03:00 in the configured timezone; the nightly
flow picks up its winner on the next run.

    python -m deployments.tune [--config decayrec.yaml]   # serve it against PREFECT_API_URL
"""

import argparse

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from decayrec.config import DecayrecConfig, load_config
from flows.tune import tune_flow

TUNE_CRON = "0 3 * * 0"


def tune_deployment(config: DecayrecConfig | None = None) -> RunnerDeployment:
    config = config or DecayrecConfig()
    parameters = {}
    if config != DecayrecConfig():
        parameters["config"] = config.model_dump(mode="json", exclude_defaults=True)
    return tune_flow.to_deployment(
        name="tune-weekly",
        schedules=[Cron(TUNE_CRON, timezone=config.timezone)],
        parameters=parameters,
        description="Tune decay and model parameters on a validation split.",
        tags=["decayrec"],
        concurrency_limit=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="YAML config file")
    args = parser.parse_args()
    serve(tune_deployment(load_config(args.config)))


if __name__ == "__main__":
    main()
