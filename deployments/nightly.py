"""The nightly deployment: the nightly flow on a cron at 02:00 in the configured timezone.

    python -m deployments.nightly [--config decayrec.yaml]   # serve it against PREFECT_API_URL

Only a non-default config is stored with the deployment; every default stays in
DecayrecConfig, so the UI form shows the model's own defaults and descriptions.
"""

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from decayrec.config import DecayrecConfig
from deployments import config_parameters, serve_main
from flows.nightly import nightly

NIGHTLY_CRON = "0 2 * * *"


def nightly_deployment(config: DecayrecConfig | None = None) -> RunnerDeployment:
    """The deployment object; the schedule's timezone is config.timezone (DST-aware)."""
    config = config or DecayrecConfig()
    return nightly.to_deployment(
        name="nightly",
        schedules=[Cron(NIGHTLY_CRON, timezone=config.timezone)],
        parameters=config_parameters(config),
        description="Publish every user's top-K list for today's as-of date.",
        tags=["decayrec"],
        concurrency_limit=1,
    )


def main() -> None:
    serve_main(nightly_deployment, __doc__)


if __name__ == "__main__":
    main()
