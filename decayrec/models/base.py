"""The interface every decayrec model implements.

A model is fitted on the decay-weighted :class:`~decayrec.features.InteractionMatrix`
and scores a dense batch of user rows (users x items, the same decayed weights); it
never excludes seen items itself (`decayrec.scoring.recommend` does). `save` and
`load` round-trip it exactly: a loaded model gives bit-identical scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from decayrec.features import InteractionMatrix


@runtime_checkable
class Model(Protocol):
    name: str
    item_ids: np.ndarray | None

    def fit(self, matrix: InteractionMatrix) -> Model: ...

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (batch x items) of a dense batch of user rows (batch x items)."""
        ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Model: ...


def positive_mean(weights: np.ndarray) -> float:
    """The mean non-zero weight: models divide by it so that the decay kernel's absolute
    scale never changes what their hyperparameters mean."""
    positive = weights[weights > 0]
    return float(positive.mean()) if len(positive) else 1.0


class AlignedScorer:
    """A model trained on one catalogue, scoring rows of another (the champion re-scored on
    today's snapshot): columns are mapped by item id; items the model never saw get score 0,
    so `recommend` fills them from popularity."""

    def __init__(self, model: Model, item_ids: np.ndarray) -> None:
        self.model = model
        self.name = model.name
        index = {item: j for j, item in enumerate(model.item_ids)}
        mapped = np.array([index.get(item, -1) for item in item_ids], dtype=np.int64)
        self.today = torch.from_numpy(np.nonzero(mapped >= 0)[0])
        self.theirs = torch.from_numpy(mapped[mapped >= 0])
        self.n_model_items = len(model.item_ids)

    @property
    def uses_sequences(self) -> bool:
        return bool(getattr(self.model, "uses_sequences", False))

    def score_users(self, matrix: InteractionMatrix, users: np.ndarray) -> torch.Tensor:
        """A sequence model's scores from today's events: today's item indices are mapped
        to the model's (events of items it never saw are dropped), scores mapped back."""
        from decayrec.models.sasrec import last_events

        if matrix.sequences is None:
            raise ValueError(f"{self.name} needs the snapshot's event sequences; it has none")
        item_map = np.full(matrix.shape[1], -1, dtype=np.int64)
        item_map[self.today.numpy()] = self.theirs.numpy()
        events = last_events(matrix.sequences, users, self.model.hyper["max_len"], item_map)
        theirs_scores = self.model.score_events(*events)
        scores = torch.zeros(len(users), matrix.shape[1], device=theirs_scores.device)
        today, theirs = self.today.to(scores.device), self.theirs.to(scores.device)
        scores[:, today] = theirs_scores[:, theirs].to(scores.dtype)
        return scores

    def score(self, x: torch.Tensor) -> torch.Tensor:
        today, theirs = self.today.to(x.device), self.theirs.to(x.device)
        x_model = torch.zeros(x.shape[0], self.n_model_items, dtype=x.dtype, device=x.device)
        x_model[:, theirs] = x[:, today]
        scores = torch.zeros_like(x)
        scores[:, today] = self.model.score(x_model)[:, theirs].to(x.dtype)
        return scores
