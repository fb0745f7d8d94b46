"""A champion.json that cannot be followed is set aside, with a warning naming both files,
and the night goes on without a champion (judged against popularity only)."""

import json
import logging
from datetime import UTC, datetime

import pytest

from decayrec.config import DecayrecConfig
from decayrec.evaluation.champion import POPULARITY, PROMOTE, Registry, gate


def registered(tmp_path, model_id: str = "run-1") -> Registry:
    registry = Registry(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"weights")
    registry.register(model_id, tmp_path / "model.pt", DecayrecConfig(), "snap", None)
    registry.promote(model_id, "first")
    return registry


def assert_set_aside(registry: Registry, original: bytes, caplog) -> None:
    pointer = registry.root / "champion.json"
    with caplog.at_level(logging.WARNING, logger="decayrec.evaluation.champion"):
        assert registry.champion() is None
    assert not pointer.exists()
    [aside] = list(registry.root.glob("champion.json.corrupt-*"))
    stamp = aside.name.removeprefix("champion.json.corrupt-")
    assert datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").year == datetime.now(UTC).year
    assert aside.read_bytes() == original  # kept for whoever looks into it
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(pointer) in warning and str(aside) in warning
    assert registry.warnings == [warning]
    # the next night: no pointer, no champion, no new warning
    assert registry.champion() is None and len(registry.warnings) == 1


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\xff garbage {", b'{"model_id": ', b"[]", b'{"x": 1}', b'{"model_id": "../x"}'],
)
def test_an_unreadable_champion_pointer_is_set_aside(tmp_path, caplog, content):
    registry = registered(tmp_path)
    (registry.root / "champion.json").write_bytes(content)
    assert_set_aside(registry, content, caplog)


@pytest.mark.parametrize("meta", [None, b"", b"{not json", b'"just a string"'])
def test_a_champion_whose_meta_json_is_missing_or_unreadable_is_set_aside(tmp_path, caplog, meta):
    registry = registered(tmp_path)
    meta_path = registry.root / "run-1" / "meta.json"
    if meta is None:
        meta_path.unlink()
    else:
        meta_path.write_bytes(meta)
    original = (registry.root / "champion.json").read_bytes()
    assert_set_aside(registry, original, caplog)
    assert "run-1/meta.json" in registry.warnings[0]


def test_a_readable_champion_is_returned_and_nothing_is_set_aside(tmp_path, caplog):
    registry = registered(tmp_path)
    with caplog.at_level(logging.WARNING, logger="decayrec.evaluation.champion"):
        champion = registry.champion()
    assert champion is not None and champion.model_id == "run-1" and champion.name == "ease"
    assert not caplog.records and registry.warnings == []
    assert json.loads((registry.root / "champion.json").read_text())["model_id"] == "run-1"


def test_without_the_champion_the_challenger_is_judged_against_popularity(tmp_path):
    registry = registered(tmp_path)
    (registry.root / "champion.json").write_text("garbage")
    champion = registry.champion()
    assert champion is None
    config = DecayrecConfig()
    protocol, metric = config.evaluation.protocols[0], config.model.gate_metric
    as_of = datetime(2024, 1, 1, tzinfo=UTC)

    def metrics(model: float) -> dict:
        return {protocol: {"model": {metric: model}, "popularity": {metric: 0.2}}}

    above = gate(config, as_of, metrics(0.3), champion)
    assert above["decision"] == PROMOTE and above["champion_id"] is None
    below = gate(config, as_of, metrics(0.1), champion)
    assert below["decision"] == POPULARITY and "no champion" in below["reason"]
