"""Model files are read with torch.load(weights_only=True) and checked: a pickle that
would run code, overwritten bytes or contents that do not fit the model raise
ModelFileError naming the file; nothing is executed and nothing crashes."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_models import matrix_from_dense, planted
from test_sasrec import cyclic_walks, small_model

from decayrec.models import EASE, IALS, ItemKNN, ModelFileError, TimeSASRec
from decayrec.models.files import write_model_file

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {"ease": EASE, "ials": IALS, "itemknn": ItemKNN, "sasrec": TimeSASRec}


class CreatesFile:
    """Unpickled, it opens (creates) `path`: code run by a model file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def fitted(name: str):
    if name == "sasrec":
        matrix, _ = cyclic_walks(n_users=8)
        return small_model(epochs=1).fit(matrix)
    model = {
        "ease": lambda: EASE(l2=1.0),
        "ials": lambda: IALS(factors=2, iterations=2, seed=0),
        "itemknn": lambda: ItemKNN("jaccard", neighbours=5),
    }[name]()
    return model.fit(matrix_from_dense(planted()))


def assert_clear_error(exc: pytest.ExceptionInfo, path: Path) -> None:
    message = str(exc.value)
    assert str(path) in message
    assert "\n" not in message


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("container", ["torch", "pickle"])
def test_a_pickle_that_runs_code_is_refused_and_never_run(name, container, tmp_path):
    marker = tmp_path / "pwned"
    payload = {"B": CreatesFile(marker), "item_ids": ["a"], "hyper": {}, "state": {}}
    path = tmp_path / "model.pt"
    if container == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ModelFileError) as exc:
        CLASSES[name].load(path)
    assert_clear_error(exc, path)
    assert not marker.exists()


def test_the_payload_does_run_code_when_loaded_unsafely(tmp_path):
    """The payload of the test above is a real one: an unsafe load creates the file."""
    marker = tmp_path / "pwned"
    torch.save({"B": CreatesFile(marker)}, tmp_path / "model.pt")
    torch.load(tmp_path / "model.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_round_trip_still_exact(name, tmp_path):
    model = fitted(name)
    model.save(tmp_path / "model.pt")
    loaded = CLASSES[name].load(tmp_path / "model.pt")
    assert list(loaded.item_ids) == [str(i) for i in model.item_ids]
    if name == "sasrec":
        matrix, _ = cyclic_walks(n_users=8)
        users = np.arange(matrix.shape[0])
        assert torch.equal(loaded.score_users(matrix, users), model.score_users(matrix, users))
    else:
        batch = torch.tensor(planted(), dtype=torch.float32)
        assert torch.equal(loaded.score(batch), model.score(batch))


_LOAD_EACH = """
import json, sys
from decayrec.models import MODELS, ModelFileError
results = []
for name, path in json.loads(sys.argv[1]):
    try:
        MODELS[name].load(path)
        results.append([path, "loaded", ""])
    except ModelFileError as exc:
        results.append([path, "ModelFileError", str(exc)])
    except Exception as exc:
        results.append([path, type(exc).__name__, str(exc)])
print(json.dumps(results))
"""


def test_overwritten_bytes_raise_the_clear_error_in_a_separate_process(tmp_path):
    """2,000 random bytes written over the start, the middle (tensor data) and the end
    of each model's file; loaded in a subprocess so that a crash would show as one."""
    rng = np.random.default_rng(0)
    cases = []
    for name in sorted(CLASSES):
        clean = tmp_path / f"{name}.pt"
        fitted(name).save(clean)
        data = clean.read_bytes()
        for where, offset in [("start", 0), ("middle", len(data) // 2), ("end", -2000)]:
            corrupted = bytearray(data)
            start = offset % len(data)
            corrupted[start : start + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()[
                : len(corrupted[start : start + 2000])
            ]
            path = tmp_path / f"{name}-{where}" / "model.pt"
            path.parent.mkdir()
            path.write_bytes(bytes(corrupted))
            cases.append([name, str(path)])
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_EACH, json.dumps(cases)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(cases)
    for path, outcome, message in results:
        assert outcome == "ModelFileError", (path, outcome, message)
        assert path in message and "\n" not in message


def test_contents_that_do_not_fit_the_model_are_refused(tmp_path):
    """Well-formed files (digest right) with indices outside the catalogue, a matrix of
    the wrong shape, non-finite weights or item ids that are not strings."""
    n = 4
    knn = {
        "similarity": "jaccard",
        "neighbours": 5,
        "cooccurrence": "decayed",
        "scale": 1.0,
        "indices": torch.tensor([[0, 1], [1, 10**9]]),
        "values": torch.tensor([0.5, 0.5]),
        "shape": [n, n],
        "item_ids": [f"i{i}" for i in range(n)],
    }
    ease = {
        "B": torch.zeros(n, n),
        "scale": 1.0,
        "l2": 1.0,
        "item_ids": [f"i{i}" for i in range(n)],
    }
    cases = [
        (ItemKNN, knn),
        (ItemKNN, {**knn, "indices": torch.tensor([[0, -1], [1, 2]])}),
        (ItemKNN, {**knn, "shape": [n + 1, n + 1]}),
        (EASE, {**ease, "B": torch.zeros(n, n + 1)}),
        (EASE, {**ease, "B": torch.full((n, n), float("nan"))}),
        (EASE, {**ease, "item_ids": list(range(n))}),
        (EASE, {**ease, "scale": "1.0"}),
        (EASE, {"B": torch.zeros(n, n)}),
    ]
    for k, (cls, state) in enumerate(cases):
        path = tmp_path / f"case{k}" / "model.pt"
        path.parent.mkdir()
        write_model_file(state, path)
        with pytest.raises(ModelFileError) as exc:
            cls.load(path)
        assert_clear_error(exc, path)


def test_a_missing_model_file_names_the_file(tmp_path):
    with pytest.raises(ModelFileError) as exc:
        EASE.load(tmp_path / "model.pt")
    assert_clear_error(exc, tmp_path / "model.pt")
