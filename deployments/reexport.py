"""The reexport deployment: no schedule; republish a date's lists from its stored model.

python -m deployments.reexport [--config decayrec.yaml]   # serve it against PREFECT_API_URL
"""

import argparse

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from decayrec.config import DecayrecConfig, load_config
from flows.reexport import reexport


def reexport_deployment(config: DecayrecConfig | None = None) -> RunnerDeployment:
    config = config or DecayrecConfig()
    parameters = {}
    if config != DecayrecConfig():
        parameters["config"] = config.model_dump(mode="json", exclude_defaults=True)
    return reexport.to_deployment(
        name="reexport",
        parameters=parameters,
        description="Republish an as-of date's lists from a stored model and snapshot, "
        "without retraining.",
        tags=["decayrec"],
        concurrency_limit=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="YAML config file")
    args = parser.parse_args()
    serve(reexport_deployment(load_config(args.config)))


if __name__ == "__main__":
    main()
