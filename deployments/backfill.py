"""The backfill deployment: no schedule; an operator runs it from the UI with a date range.

python -m deployments.backfill [--config decayrec.yaml]   # serve it against PREFECT_API_URL
"""

import argparse

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from decayrec.config import DecayrecConfig, load_config
from flows.backfill import backfill


def backfill_deployment(config: DecayrecConfig | None = None) -> RunnerDeployment:
    config = config or DecayrecConfig()
    parameters = {}
    if config != DecayrecConfig():
        parameters["config"] = config.model_dump(mode="json", exclude_defaults=True)
    return backfill.to_deployment(
        name="backfill",
        parameters=parameters,
        description="Publish the lists of every as-of date of a range, oldest first; days "
        "already published are skipped unless forced; the first failed day stops it.",
        tags=["decayrec"],
        concurrency_limit=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="YAML config file")
    args = parser.parse_args()
    serve(backfill_deployment(load_config(args.config)))


if __name__ == "__main__":
    main()
