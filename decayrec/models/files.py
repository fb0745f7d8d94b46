"""Model files: tensors and plain data only, with a digest, read without running code.

`write_model_file` saves a model's state (dicts, lists, str, numbers and dense tensors)
with a SHA-256 digest of its contents; `read_model_file` loads it with
`torch.load(weights_only=True)`: a file that would build any other object (run code)
when unpickled, or whose contents no longer match the digest, raises `ModelFileError`
naming the file. `saved_tensor`, `saved_number` and `saved_item_ids` check the parts a
model rebuilds itself from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
        digest.update(memoryview(flat.view(torch.uint8).numpy()))  # no copy (1.6 GB: 3 s)
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
