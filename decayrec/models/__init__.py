"""Recommendation models: one model per file, device-agnostic, one contract (`Model`).

`REGISTRY` is the one place that knows the models: it maps each name to its class and
its configuration section (decayrec.config). A new model is a file here (a `Model`
subclass declaring its name, input and `from_config`), a section in decayrec.config's
`ModelConfig` union, and one line below.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from decayrec.config import (
    MODEL_SECTIONS,
    DecayrecConfig,
    EaseConfig,
    IALSConfig,
    ItemKNNConfig,
    ModelSettings,
    SASRecConfig,
)
from decayrec.models.base import AlignedScorer, Input, Model
from decayrec.models.device import pick_device
from decayrec.models.ease import EASE
from decayrec.models.files import ModelFileError
from decayrec.models.ials import IALS
from decayrec.models.itemknn import ItemKNN
from decayrec.models.sasrec import TimeSASRec


@dataclass(frozen=True)
class Registered:
    """A model class and the configuration section it is built from."""

    model: type[Model]
    section: type[ModelSettings]


def _registry(*entries: Registered) -> dict[str, Registered]:
    """The entries by name, checked: each class and section agree on the name and on
    reading event sequences, and every section of the config is registered."""
    registry = {entry.model.name: entry for entry in entries}
    for name, entry in registry.items():
        section = entry.section()
        if section.name != name:
            raise TypeError(f"model {name!r} is registered with the section of {section.name!r}")
        if (entry.model.input is Input.SEQUENCES) != (section.sequence_events > 0):
            raise TypeError(f"model {name!r} and its section disagree on reading sequences")
    if set(registry) != set(MODEL_SECTIONS):
        raise TypeError(f"models {sorted(registry)} but config sections {sorted(MODEL_SECTIONS)}")
    return registry


REGISTRY: dict[str, Registered] = _registry(
    Registered(EASE, EaseConfig),
    Registered(IALS, IALSConfig),
    Registered(ItemKNN, ItemKNNConfig),
    Registered(TimeSASRec, SASRecConfig),
)
MODELS: dict[str, type[Model]] = {name: entry.model for name, entry in REGISTRY.items()}


def model_class(name: str) -> type[Model]:
    """The class of a model name (the `name` of a model section)."""
    try:
        return MODELS[str(name)]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}") from None


def make_model(
    config: DecayrecConfig, checkpoint_dir: Path | None = None
) -> tuple[Model, torch.device]:
    """The configured model (unfitted) and the device it runs on; models that train in
    epochs checkpoint to `checkpoint_dir` when given."""
    device = pick_device(config.model.device)
    return model_class(config.model.name).from_config(config, device, checkpoint_dir), device


__all__ = [
    "EASE",
    "IALS",
    "MODELS",
    "REGISTRY",
    "AlignedScorer",
    "Input",
    "ItemKNN",
    "Model",
    "ModelFileError",
    "Registered",
    "TimeSASRec",
    "make_model",
    "model_class",
]
