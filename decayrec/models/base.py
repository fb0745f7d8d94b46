"""The contract every decayrec model declares, and the wrapper that re-aligns one.

A model (a subclass of :class:`Model`, in the spirit of `implicit`'s base class)
declares its `name`, its `input` (what it scores a batch of users from: their
decay-weighted rows as CSR or as a dense tensor, or their event sequences) and how it
is built from the configuration (`from_config`); `decayrec.models.REGISTRY` maps the
name to the class and its configuration section. It is fitted on the decay-weighted
:class:`~decayrec.lake.features.InteractionMatrix` and never excludes seen items itself
(`decayrec.scoring.recommend` does). Scoring follows the input: row models
(`Input.CSR`, `Input.DENSE`) implement `score(x)`, sequence models
(`Input.SEQUENCES`) `score_users(matrix, users)`; wrappers (:class:`AlignedScorer`,
`decayrec.content.ColdStartBlend`) declare the input of the model they wrap.

`save` and `load` round-trip a model exactly: a loaded model gives bit-identical scores.
Model files hold tensors and plain data only (dicts, lists, str, numbers): the model's
`state()`, written by `write_model_file` with a SHA-256 digest of its contents and read
back by `read_model_file` with `torch.load(weights_only=True)`: a file that would build
any other object (run code) when unpickled, or whose contents no longer match the
digest, raises `ModelFileError` naming the file. Each model's `from_state` checks what
it rebuilds (shapes, index ranges, finite values); `load` turns any error there into a
`ModelFileError` naming the file.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import torch

from decayrec.lake.features import InteractionMatrix
from decayrec.models.device import last_events, remap_columns

if TYPE_CHECKING:
    from decayrec.config import DecayrecConfig


class Input(StrEnum):
    """What a model scores a batch of users from."""

    CSR = "csr"  # score(x): the users' decayed rows, a sparse CSR tensor (batch x items)
    DENSE = "dense"  # score(x): the same rows as a dense tensor
    SEQUENCES = "sequences"  # score_users(matrix, users): the users' event sequences


class Model(ABC):
    """A recommendation model: see the module docstring for the contract."""

    name: ClassVar[str]
    input: ClassVar[Input]
    item_ids: np.ndarray | None = None

    @classmethod
    @abstractmethod
    def from_config(
        cls,
        config: DecayrecConfig,
        device: torch.device,
        checkpoint_dir: Path | None = None,
    ) -> Self:
        """The model `config.model` (this model's section) describes, unfitted, on
        `device`; a model that trains in epochs checkpoints to `checkpoint_dir`."""

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

    def _back(self, scores: torch.Tensor, n_items: int, dtype: torch.dtype) -> torch.Tensor:
        """The model's dense scores in today's columns (0 where it never saw the item)."""
        out = torch.zeros(scores.shape[0], n_items, dtype=dtype, device=scores.device)
        today, theirs = self.today.to(scores.device), self.theirs.to(scores.device)
        out[:, today] = scores[:, theirs].to(dtype)
        return out


DIGEST_KEY = "_decayrec_digest"


class ModelFileError(ValueError):
    """A model file that cannot be loaded safely: not a decayrec model file, corrupted,
    or holding something other than tensors and plain data."""


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def model_file_error(path: str | Path, why: str) -> ModelFileError:
    """The one-paragraph error for a model file that cannot be loaded."""
    return ModelFileError(
        f"model file {path} cannot be loaded: {why}. A decayrec model file holds tensors "
        "and plain data only and is read without running any code; this one is corrupted, "
        "truncated or was not written by decayrec's save. Retrain the model, or promote "
        "another one from the registry."
    )


@contextmanager
def model_file_errors(path: str | Path) -> Iterator[None]:
    """Any error while a model is rebuilt from a file's contents becomes a
    ModelFileError naming the file."""
    try:
        yield
    except ModelFileError:
        raise
    except Exception as exc:
        raise model_file_error(path, _reason(exc)) from None


def _update_digest(digest: Any, value: Any) -> None:
    """Feed `value` (tensors and plain data) to `digest`, unambiguously."""
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise TypeError(f"a model file stores dense tensors only, not {value.layout}")
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}:".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}:".encode())
        for key, item in sorted(value.items(), key=lambda kv: repr(kv[0])):
            _update_digest(digest, key)
            _update_digest(digest, item)
    elif isinstance(value, list | tuple):
        digest.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}:".encode())
        for item in value:
            _update_digest(digest, item)
    elif value is None or isinstance(value, bool | int | float | str):
        text = repr(value)
        digest.update(f"{type(value).__name__}{len(text)}:{text}".encode())
    else:
        raise TypeError(f"a model file stores tensors and plain data only, not {type(value)}")


def state_digest(state: dict[str, Any]) -> str:
    """The SHA-256 of a model file's contents (tensors by dtype, shape and bytes)."""
    digest = hashlib.sha256()
    _update_digest(digest, state)
    return digest.hexdigest()


def write_model_file(state: dict[str, Any], path: str | Path) -> None:
    """Save `state` (tensors and plain data only) with its digest."""
    if DIGEST_KEY in state:
        raise ValueError(f"{DIGEST_KEY} is reserved")
    torch.save({**state, DIGEST_KEY: state_digest(state)}, path)


def read_model_file(path: str | Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """The contents of a model file written by `write_model_file`, loaded with
    `weights_only=True` and checked against the digest (files saved before the digest
    existed are read without the check)."""
    path = Path(path)
    if not path.is_file():
        raise model_file_error(path, "the file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise model_file_error(path, _reason(exc)) from None
    if not isinstance(state, dict):
        raise model_file_error(path, f"it holds a {type(state).__name__}, not a dict")
    saved_digest = state.pop(DIGEST_KEY, None)
    with model_file_errors(path):
        if saved_digest is not None and saved_digest != state_digest(state):
            raise model_file_error(path, "its contents do not match the SHA-256 digest saved in it")
    if torch.device(map_location).type != "cpu":
        state = _to_device(state, torch.device(map_location))
    return state


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return type(value)((k, _to_device(v, device)) for k, v in value.items())
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


def saved_tensor(state: dict[str, Any], key: str, ndim: int, finite: bool = True) -> torch.Tensor:
    """state[key], checked: a dense tensor of `ndim` dimensions (floating point ones
    finite when `finite`)."""
    value = state[key]
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
        raise ValueError(f"{key!r} is not a dense tensor")
    if value.dim() != ndim:
        raise ValueError(f"{key!r} has {value.dim()} dimensions, expected {ndim}")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{key!r} holds values that are not finite")
    return value


def saved_number(state: dict[str, Any], key: str) -> float:
    """state[key], checked: a finite number."""
    value = state[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"{key!r} is not a number")
    if abs(value) == float("inf"):
        raise ValueError(f"{key!r} is not finite")
    return value


def saved_item_ids(state: dict[str, Any], key: str = "item_ids") -> np.ndarray:
    """state[key], checked: a list of str, as an object array."""
    value = state[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{key!r} is not a list of str")
    return np.asarray(value, dtype=object)
