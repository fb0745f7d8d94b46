"""A score blend of the sequence model with an item-item model fitted on the same
decay-weighted matrix: EASE (decayrec/models/ease.py) or item-item kNN (itemknn.py).

For a user u with the sequence model's next-item probabilities p_u and the item-item
model's scores e_u (x_u B for EASE, x_u S for kNN, x_u the user's decayed row):

    s_u(i) = (1 - w) p_u(i) / max_j p_u(j)  +  w max(e_u(i), 0) / max_j e_u(j)

Each part is divided by the user's best score, so the weight w means the same for a
user whose next item is obvious as for one whose is not; negative item-item scores add
nothing. The sequence model reads the order of the last events, the item-item model the
whole decayed history: the blend keeps both. Without a blend (`seq_blend: none`) the
sequence model scores alone; w = 1 is the item-item model alone (its ranks, for
the users the sequence model scores). Users without events score 0: the popularity
fallback's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models.base import Model
from decayrec.models.device import user_rows
from decayrec.models.ease import EASE
from decayrec.models.itemknn import ItemKNN

# the item-item models a sequence model can be blended with (their registry names)
COMPANIONS: dict[str, type[Model]] = {EASE.name: EASE, ItemKNN.name: ItemKNN}


class Blend:
    """The item-item half of a sequence model's blend, and the weight w of that half."""

    def __init__(self, companion: Model, weight: float) -> None:
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"blend weight must be in (0, 1], not {weight}")
        self.companion_class(companion.name)  # one of the item-item models
        self.companion, self.weight = companion, weight

    @staticmethod
    def companion_class(name: str) -> type[Model]:
        if name not in COMPANIONS:
            raise ValueError(f"cannot blend with {name!r}; choose {sorted(COMPANIONS)}")
        return COMPANIONS[name]

    def fit(self, matrix: InteractionMatrix) -> Blend:
        self.companion.fit(matrix)
        return self

    @torch.no_grad()
    def mix(
        self, probs: torch.Tensor, matrix: InteractionMatrix, users: np.ndarray
    ) -> torch.Tensor:
        """s_u for the users' sequence-model probabilities `probs` (users x items)."""
        x, _, _ = user_rows(
            matrix, matrix.row_pointer(), users, matrix.row_weights, probs.device, csr=True
        )
        other = self.companion.score(x).to(probs.device).float().clamp_min(0.0)
        other = other / other.max(1, keepdim=True).values.clamp_min(1e-30)
        own = probs / probs.max(1, keepdim=True).values.clamp_min(1e-30)
        mixed = (1.0 - self.weight) * own + self.weight * other
        # users without events stay at zero: the popularity fallback lists them
        return torch.where(probs.sum(1, keepdim=True) > 0, mixed, torch.zeros_like(mixed))

    def state(self) -> dict[str, Any]:
        return {"name": self.companion.name, "weight": self.weight, "state": self.companion.state()}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str) -> Blend:
        companion = cls.companion_class(str(state["name"])).from_state(state["state"], device)
        return cls(companion, float(state["weight"]))
