"""The backfill deployment: no schedule; an operator runs it from the UI with a date range.

python -m deployments.backfill [--config decayrec.yaml]   # serve it against PREFECT_API_URL
"""

from prefect.deployments.runner import RunnerDeployment

from decayrec.config import DecayrecConfig
from deployments import config_parameters, serve_main
from flows.backfill import backfill


def backfill_deployment(config: DecayrecConfig | None = None) -> RunnerDeployment:
    config = config or DecayrecConfig()
    return backfill.to_deployment(
        name="backfill",
        parameters=config_parameters(config),
        description="Publish the lists of every as-of date of a range, oldest first; days "
        "already published are skipped unless forced; the first failed day stops it.",
        tags=["decayrec"],
        concurrency_limit=1,
    )


def main() -> None:
    serve_main(backfill_deployment, __doc__)


if __name__ == "__main__":
    main()
