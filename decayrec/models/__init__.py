"""Recommendation models: one model per file, device-agnostic, one interface (`Model`)."""

from decayrec.models.base import AlignedScorer, Model, ModelFileError
from decayrec.models.ease import EASE
from decayrec.models.ials import IALS
from decayrec.models.itemknn import ItemKNN
from decayrec.models.sasrec import TimeSASRec

MODELS: dict[str, type] = {"ease": EASE, "ials": IALS, "itemknn": ItemKNN, "sasrec": TimeSASRec}


def model_class(name: str) -> type:
    """The class of a model name (ModelConfig.name)."""
    try:
        return MODELS[str(name)]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}") from None


__all__ = [
    "EASE",
    "IALS",
    "MODELS",
    "AlignedScorer",
    "ItemKNN",
    "Model",
    "ModelFileError",
    "TimeSASRec",
    "model_class",
]
