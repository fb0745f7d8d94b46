"""Recommendation models: one model per file, device-agnostic."""

from decayrec.models.ease import EASE

__all__ = ["EASE"]
