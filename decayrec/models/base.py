"""The contract every decayrec model declares, and the wrapper that re-aligns one.

A model (a subclass of :class:`Model`, in the spirit of `implicit`'s base class)
declares its `name`, its `input` (what it scores a batch of users from: their
decay-weighted rows as CSR or as a dense tensor, or their event sequences) and how it
is built from the configuration: `from_config` gives each constructor argument the
setting of its name (or the one the class's `settings` names) from the model's
configuration section, else from `decay`. `decayrec.models.REGISTRY` maps the name to
the class and its configuration section. A model whose item side is a sum over users
(EASE, item-item) also declares it as `user_sums` / `fit_sums`, so that the fit can be
sharded by user. It is fitted on the decay-weighted
:class:`~decayrec.lake.features.InteractionMatrix` and never excludes seen items itself
(`decayrec.scoring.recommend` does). Scoring follows the input: row models
(`Input.CSR`, `Input.DENSE`) implement `score(x)`, sequence models
(`Input.SEQUENCES`) `score_users(matrix, users)`; wrappers (:class:`AlignedScorer`,
`decayrec.content.ColdStartBlend`) declare the input of the model they wrap.

Every model also answers *why* (`explain`): for a batch of user rows and the items
recommended to them, the user's own items that contributed most, each model in its own
terms (item-item: the terms w_ui S_ij of the score; EASE: x_ui B_ij; iALS and the
sequence model: the history items closest in their embedding). The default names the
user's most heavily weighted items. `reasons` holds the plain-words phrase of each kind
of explanation, `{items}` standing for the contributing items.

`save` and `load` round-trip a model exactly: a loaded model gives bit-identical scores.
A model file (decayrec.models.files) holds the model's `state()`: tensors and plain
data only, read back without running code. Each model's `from_state` checks what it
rebuilds (shapes, index ranges, finite values); `load` turns any error there into a
`ModelFileError` naming the file.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models.device import csr_row_indices, last_events, remap_columns
from decayrec.models.files import model_file_errors, read_model_file, write_model_file

if TYPE_CHECKING:
    from decayrec.config import DecayrecConfig


class Input(StrEnum):
    """What a model scores a batch of users from."""

    CSR = "csr"  # score(x): the users' decayed rows, a sparse CSR tensor (batch x items)
    DENSE = "dense"  # score(x): the same rows as a dense tensor
    SEQUENCES = "sequences"  # score_users(matrix, users): the users' event sequences


# about this many (history entry x recommended item) terms are computed at once: small
# blocks keep the padding small (MovieLens-small: 12 % padded terms at 2^16, 48 % at 2^18)
EXPLAIN_CHUNK_TERMS = 1 << 16


@dataclass
class Explanation:
    """Why each recommended item of a batch: `items` (batch x k x top) the indices of the
    user's items that contributed most, best first, -1 where fewer; `weights` their
    contributions (same shape, 0 where none); `kind` (batch x k) which phrase of the
    explainer's `reasons` applies (None: the first)."""

    items: torch.Tensor
    weights: torch.Tensor
    kind: torch.Tensor | None = None


def history_entries(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The stored entries of a batch of user rows, CSR or dense: (row, col, value)."""
    if x.layout == torch.sparse_csr:
        return csr_row_indices(x), x.col_indices(), x.values().to(torch.float32)
    row, col = torch.nonzero(x, as_tuple=True)
    return row, col, x[row, col].to(torch.float32)


def top_contributions(
    x: torch.Tensor,
    items: torch.Tensor,
    terms: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    top: int,
    chunk_terms: int = EXPLAIN_CHUNK_TERMS,
) -> Explanation:
    """For each user row of `x` (batch x items, CSR or dense) and each item of `items`
    (batch x k, -1 = none), the `top` entries of the row with the largest positive terms,
    best first. `terms(history, targets, weights)` gets a block of n users' padded
    history items and weights (n x H) and their targets (n x k) and returns the terms
    (n x k x H), 0 where the weight is 0 (the padding has weight 0). Users are taken in
    order of history length, in blocks of about `chunk_terms` terms, so padding stays
    small; a top-k per (user, target) picks."""
    batch, k = items.shape
    row, col, weight = history_entries(x)
    out_items = torch.full((batch, k, top), -1, dtype=torch.int64, device=items.device)
    out_weights = torch.zeros((batch, k, top), dtype=torch.float32, device=items.device)
    if len(col) == 0 or k == 0 or top == 0:
        return Explanation(out_items, out_weights)
    counts = torch.bincount(row, minlength=batch)
    starts = (torch.cumsum(counts, 0) - counts).cpu().numpy()
    by_length = np.argsort(counts.cpu().numpy(), kind="stable")
    lengths = counts.cpu().numpy()[by_length]
    i = int(np.searchsorted(lengths, 1))  # users without entries explain nothing
    while i < batch:
        cost = np.arange(1, batch - i + 1) * lengths[i:] * k
        j = i + max(1, int(np.searchsorted(cost, chunk_terms, side="right")))
        users = torch.from_numpy(by_length[i:j]).to(items.device)
        width = int(lengths[j - 1])
        offset = torch.arange(width, device=items.device)
        valid = offset[None, :] < counts[users][:, None]
        at = torch.where(valid, torch.from_numpy(starts[by_length[i:j]])[:, None] + offset, 0)
        history, weights = col[at], torch.where(valid, weight[at], 0.0)
        targets = items[users]
        value = terms(history, targets.clamp_min(0), weights).to(torch.float32)
        best, where = torch.topk(value, min(top, width), dim=2)
        n, _, t = best.shape
        chosen = history.gather(1, where.view(n, k * t)).view(n, k, t)
        keep = (best > 0) & (targets >= 0)[:, :, None]
        out_items[users, :, : best.shape[2]] = torch.where(keep, chosen, -1)
        out_weights[users, :, : best.shape[2]] = torch.where(keep, best, 0.0)
        i = j
    return Explanation(out_items, out_weights)


def closest_in_embedding(
    x: torch.Tensor, items: torch.Tensor, vectors: torch.Tensor, top: int
) -> Explanation:
    """`top_contributions` with the cosine of the history item's and the recommended
    item's rows of `vectors` (items x dim) as the term (a batched matrix product), for
    the history items of positive weight."""
    unit = vectors.detach().to(items.device, torch.float32)
    unit = unit / unit.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def cosines(history: torch.Tensor, targets: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        similarity = torch.bmm(unit[targets], unit[history].transpose(1, 2))
        return similarity * (w > 0)[:, None, :]

    return top_contributions(x, items, cosines, top)


class Model(ABC):
    """A recommendation model: see the module docstring for the contract."""

    name: ClassVar[str]
    input: ClassVar[Input]
    # the plain-words phrase of each kind of explanation ({items}: the user's items)
    reasons: ClassVar[tuple[str, ...]] = ("for a history led by {items}",)
    # constructor arguments whose setting has another name: {argument: setting}
    settings: ClassVar[dict[str, str]] = {}
    item_ids: np.ndarray | None = None

    @classmethod
    def from_config(
        cls,
        config: DecayrecConfig,
        device: torch.device,
        checkpoint_dir: Path | None = None,
    ) -> Self:
        """The model the configuration describes, unfitted, on `device`: each
        constructor argument takes its setting (`settings`, else the argument's name)
        from `config.model`, this model's section, else from `config.decay`; a model
        that trains in epochs (a `checkpoint_dir` argument) checkpoints there."""
        available = {**dict(config.decay), **dict(config.model)}
        arguments: dict[str, Any] = {}
        for argument in inspect.signature(cls).parameters:
            setting = cls.settings.get(argument, argument)
            if setting in available and argument != "device":
                arguments[argument] = available[setting]
            elif argument == "checkpoint_dir":
                arguments[argument] = checkpoint_dir
        return cls(**arguments, device=device)

    @abstractmethod
    def fit(self, matrix: InteractionMatrix) -> Self: ...

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """What `save` writes: tensors and plain data only."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str) -> Self:
        """The fitted model `state` describes, each part checked (raise on anything
        that does not fit)."""

    # The item side as a map-reduce over user shards (decayrec.scoring.distributed):
    # `user_sums` of each shard of users (the map; a shard's rows are a matrix of its own
    # users, every item), summed key by key, then `fit_sums` once (the reduce and the
    # item-side solve). `scale` is positive_mean of every user's weights. Models whose fit
    # is no such sum (iALS, the sequence model) keep `summable` False and fit in one process.
    def summable(self, n_items: int) -> bool:
        """Whether this model's fit on `n_items` items is a sum over users and a solve."""
        return False

    def user_sums(self, matrix: InteractionMatrix, scale: float) -> dict[str, torch.Tensor]:
        """The map: the item-side sums of the users of `matrix`."""
        raise NotImplementedError(f"{self.name} does not fit by sums over users")

    def fit_sums(self, sums: dict[str, torch.Tensor], scale: float, item_ids: np.ndarray) -> Self:
        """The reduce: the fitted model from `user_sums` summed over every user."""
        raise NotImplementedError(f"{self.name} does not fit by sums over users")

    def explain(self, x: torch.Tensor, items: torch.Tensor, top: int = 3) -> Explanation:
        """Why `items` (batch x k item indices, -1 = none) were recommended to the users
        whose rows are `x` (batch x items, CSR or dense, as scored): the user's items
        that contributed most. By default the user's most heavily weighted items (a
        model with nothing finer to say); models override it in their own terms."""
        return top_contributions(
            x,
            items,
            lambda history, targets, w: w[:, None, :].expand(-1, targets.shape[1], -1),
            top,
        )

    def save(self, path: str | Path) -> None:
        write_model_file(self.state(), path)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Self:
        """A saved model; a file that is not one raises ModelFileError naming it."""
        state = read_model_file(path)
        with model_file_errors(path):
            return cls.from_state(state, device)


def positive_mean(weights: np.ndarray) -> float:
    """The mean non-zero weight: models divide by it so that the decay kernel's absolute
    scale never changes what their hyperparameters mean."""
    positive = weights[weights > 0]
    return float(positive.mean()) if len(positive) else 1.0


class AlignedScorer:
    """A model trained on one catalogue, scoring rows of another (the champion re-scored on
    today's snapshot): columns are mapped by item id; items the model never saw get score 0,
    so `recommend` fills them from popularity. It takes the input its model declares
    (CSR rows are re-indexed as CSR: no dense rows built)."""

    def __init__(self, model: Any, item_ids: np.ndarray) -> None:
        self.model = model
        self.name = model.name
        self.input = model.input
        self.reasons = model.reasons
        index = {item: j for j, item in enumerate(model.item_ids)}
        mapped = np.array([index.get(item, -1) for item in item_ids], dtype=np.int64)
        self.today = torch.from_numpy(np.nonzero(mapped >= 0)[0])
        self.theirs = torch.from_numpy(mapped[mapped >= 0])
        self.n_model_items = len(model.item_ids)
        self.to_theirs = torch.from_numpy(mapped)  # today's column -> the model's, or -1
        self.to_today = torch.full((self.n_model_items,), -1, dtype=torch.int64)
        self.to_today[self.theirs] = self.today

    def score_users(self, matrix: InteractionMatrix, users: np.ndarray) -> torch.Tensor:
        """A sequence model's scores from today's events: today's item indices are mapped
        to the model's (events of items it never saw are dropped), scores mapped back."""
        if matrix.sequences is None:
            raise ValueError(f"{self.name} needs the snapshot's event sequences; it has none")
        item_map = self.to_theirs.numpy()
        events = last_events(matrix.sequences, users, self.model.hyper["max_len"], item_map)
        theirs_scores = self.model.score_events(*events)
        return self._back(theirs_scores, matrix.shape[1], theirs_scores.dtype)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of today's rows (CSR or dense), in today's columns."""
        if x.layout == torch.sparse_csr:
            scores = self.model.score(remap_columns(x, self.to_theirs, self.n_model_items))
            if scores.layout == torch.sparse_csr:
                return remap_columns(scores, self.to_today, x.shape[1])
            return self._back(scores, x.shape[1], x.dtype)
        today, theirs = self.today.to(x.device), self.theirs.to(x.device)
        x_model = torch.zeros(x.shape[0], self.n_model_items, dtype=x.dtype, device=x.device)
        x_model[:, theirs] = x[:, today]
        return self._back(self.model.score(x_model), x.shape[1], x.dtype)

    def explain(self, x: torch.Tensor, items: torch.Tensor, top: int = 3) -> Explanation:
        """The model's explanation of today's rows and items, in today's columns (items
        the model never saw explain nothing)."""
        if x.layout != torch.sparse_csr:
            x = x.to_sparse_csr()
        theirs_x = remap_columns(x, self.to_theirs, self.n_model_items)
        to_theirs = self.to_theirs.to(items.device)
        theirs_items = torch.where(items >= 0, to_theirs[items.clamp_min(0)], -1)
        why = self.model.explain(theirs_x, theirs_items, top)
        to_today = self.to_today.to(why.items.device)
        back = torch.where(why.items >= 0, to_today[why.items.clamp_min(0)], -1)
        return Explanation(back, why.weights, why.kind)

    def _back(self, scores: torch.Tensor, n_items: int, dtype: torch.dtype) -> torch.Tensor:
        """The model's dense scores in today's columns (0 where it never saw the item)."""
        out = torch.zeros(scores.shape[0], n_items, dtype=dtype, device=scores.device)
        today, theirs = self.today.to(scores.device), self.theirs.to(scores.device)
        out[:, today] = scores[:, theirs].to(dtype)
        return out
