"""The reexport deployment: no schedule; republish a date's lists from its stored model.

python -m deployments.reexport [--config decayrec.yaml]   # serve it against PREFECT_API_URL
"""

from prefect.deployments.runner import RunnerDeployment

from decayrec.config import DecayrecConfig
from deployments import config_parameters, serve_main
from flows.reexport import reexport


def reexport_deployment(config: DecayrecConfig | None = None) -> RunnerDeployment:
    config = config or DecayrecConfig()
    return reexport.to_deployment(
        name="reexport",
        parameters=config_parameters(config),
        description="Republish an as-of date's lists from a stored model and snapshot, "
        "without retraining.",
        tags=["decayrec"],
        concurrency_limit=1,
    )


def main() -> None:
    serve_main(reexport_deployment, __doc__)


if __name__ == "__main__":
    main()
