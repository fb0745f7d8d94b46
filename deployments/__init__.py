"""Prefect deployments of decayrec's flows: one FlowDeployment per flow (deployments.nightly,
.tune, .backfill, .reexport), all served together by deployments.serve."""

import argparse
from dataclasses import dataclass
from typing import Any

from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from decayrec.config import DecayrecConfig, load_config


def config_parameters(config: DecayrecConfig) -> dict[str, Any]:
    """What a deployment stores: only a config that differs from the model's defaults, so
    the UI form shows DecayrecConfig's own defaults and descriptions."""
    if config == DecayrecConfig():
        return {}
    return {"config": config.model_dump(mode="json", exclude_defaults=True)}


def config_from_args(doc: str | None) -> DecayrecConfig:
    """The config of a `python -m deployments.X [--config FILE]` command line."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--config", help="YAML config file")
    return load_config(parser.parse_args().config)


@dataclass(frozen=True)
class FlowDeployment:
    """A deployment of one of decayrec's flows: on `cron` in config.timezone (DST-aware),
    or without a schedule (run by hand) when `cron` is None."""

    flow: Flow
    name: str
    description: str
    cron: str | None = None

    def build(self, config: DecayrecConfig | None = None) -> RunnerDeployment:
        """The deployment object: one run at a time, tagged decayrec, storing only what
        `config` sets apart from the defaults (config_parameters)."""
        config = config or DecayrecConfig()
        return self.flow.to_deployment(
            name=self.name,
            schedules=None if self.cron is None else [Cron(self.cron, timezone=config.timezone)],
            parameters=config_parameters(config),
            description=self.description,
            tags=["decayrec"],
            concurrency_limit=1,
        )

    def serve(self, doc: str | None) -> None:
        """`python -m deployments.X [--config FILE]`: serve this deployment."""
        serve(self.build(config_from_args(doc)))
