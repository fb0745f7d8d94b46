"""A kept model: its directory under ``<data_dir>/models/<model_id>/`` (``model.pt`` and
``meta.json``), read back as its configuration and its fitted model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from decayrec.config import DecayrecConfig, model_section
from decayrec.models import Model, model_class


@dataclass
class ModelRecord:
    model_id: str
    path: Path  # the model's directory
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def model_path(self) -> Path:
        return self.path / "model.pt"

    def config(self, base: DecayrecConfig) -> DecayrecConfig:
        """`base` with this model's model and decay settings (records written before each
        model had a section of its own hold every model's settings: its own are kept)."""
        saved = self.meta["config"]
        return base.model_copy(
            update={
                "model": model_section(saved["model"]),
                "decay": type(base.decay).model_validate(saved["decay"]),
            }
        )

    def load(self, device: torch.device | str = "cpu") -> Model:
        return model_class(self.name).load(self.model_path, device=device)
