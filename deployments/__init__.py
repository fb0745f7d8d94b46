"""Prefect deployments of decayrec's flows."""

import argparse
from collections.abc import Callable
from typing import Any

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from decayrec.config import DecayrecConfig, load_config


def config_parameters(config: DecayrecConfig) -> dict[str, Any]:
    """What a deployment stores: only a config that differs from the model's defaults, so
    the UI form shows DecayrecConfig's own defaults and descriptions."""
    if config == DecayrecConfig():
        return {}
    return {"config": config.model_dump(mode="json", exclude_defaults=True)}


def serve_main(build: Callable[[DecayrecConfig], RunnerDeployment], doc: str | None) -> None:
    """`python -m deployments.X [--config FILE]`: serve one deployment."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--config", help="YAML config file")
    args = parser.parse_args()
    serve(build(load_config(args.config)))
