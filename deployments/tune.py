"""The weekly tune deployment: Sundays 03:00 in the configured timezone; the nightly
flow picks up its winner on the next run.

    python -m deployments.tune [--config decayrec.yaml]   # serve it against PREFECT_API_URL
"""

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from decayrec.config import DecayrecConfig
from deployments import config_parameters, serve_main
from flows.tune import tune_flow

TUNE_CRON = "0 3 * * 0"


def tune_deployment(config: DecayrecConfig | None = None) -> RunnerDeployment:
    config = config or DecayrecConfig()
    return tune_flow.to_deployment(
        name="tune-weekly",
        schedules=[Cron(TUNE_CRON, timezone=config.timezone)],
        parameters=config_parameters(config),
        description="Tune decay and model parameters on a validation split.",
        tags=["decayrec"],
        concurrency_limit=1,
    )


def main() -> None:
    serve_main(tune_deployment, __doc__)


if __name__ == "__main__":
    main()
