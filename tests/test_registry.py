"""Model registry and the champion/challenger gate, on real backtests of a small lake.

Two user groups with disjoint tastes (users g0-*, items a*; users g1-*, items b*). A
model scored by popularity only (min_history larger than any history) mixes both
groups and is clearly worse than item-item, which keeps to the user's group.
"""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest

from decayrec.config import DecayrecConfig, EvaluationConfig, ItemKNNConfig, SourceConfig
from decayrec.evaluation.backtest import evaluate_all
from decayrec.evaluation.champion import KEEP, POPULARITY, PROMOTE, Registry, code_version, gate
from decayrec.lake.features import build_snapshot
from decayrec.lake.ingest import load_batches, stage_sources
from decayrec.scoring.lists import popularity_lists, score_saved_model, train_and_score

AS_OF = date(2024, 4, 1)
GOOD = ItemKNNConfig(neighbours=20)
BAD = ItemKNNConfig(neighbours=20, min_history=10_000)  # popularity only


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("gate")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    lines = ["user_id,item_id,event_type,event_ts,value"]
    for group, prefix in ((0, "a"), (1, "b")):
        for u in range(30):
            # group 1 is busier, so its items are the most popular overall
            n = 6 if group == 0 else 9
            for i in rng.choice(12, size=n, replace=False):
                ts = start + timedelta(days=float(rng.uniform(0, 90)))
                lines.append(f"g{group}-{u},{prefix}{i},click,{ts.isoformat()},")
    (root / "events.csv").write_text("\n".join(lines) + "\n")
    config = DecayrecConfig(
        data_dir=root,
        sources=[SourceConfig(path=str(root / "events.csv"), format="csv")],
        evaluation=EvaluationConfig(protocols=["global_time"], test_fraction=0.2),
        use_tuned=False,
    )
    load_batches(config, stage_sources(config, "gate"), "gate")
    return config


def nightly_steps(config, run_id):
    """What the nightly flow does before its gate: snapshot, train, backtest."""
    as_of_time = config.as_of_time(AS_OF)
    snapshot = build_snapshot(config, as_of_time)
    trained = train_and_score(config, snapshot, run_id)
    return as_of_time, snapshot, trained, evaluate_all(config, as_of_time)


def test_gate_keeps_the_champion_when_the_challenger_is_worse(lake, tmp_path):
    registry = Registry(tmp_path)
    good = lake.model_copy(update={"model": GOOD})
    _, snapshot, trained, metrics = nightly_steps(good, "run-good")
    champion = registry.register(
        "run-good", trained.model_path, good, snapshot.snapshot_id, metrics
    )
    registry.promote("run-good", "first")

    bad = lake.model_copy(update={"model": BAD})
    as_of_time, snapshot, _, bad_metrics = nightly_steps(bad, "run-bad")
    decision = gate(bad, as_of_time, bad_metrics, registry.champion())
    assert decision["decision"] == KEEP, decision
    assert decision["champion"] == pytest.approx(metrics["global_time"]["model"]["ndcg@10"])
    assert decision["champion"] - decision["challenger"] > bad.model.gate_tolerance
    assert "worse" in decision["reason"]
    # the champion's lists, re-scored on tonight's snapshot, are what gets published
    kept = score_saved_model(bad, champion, snapshot, "run-bad")
    assert kept.model == "itemknn" and kept.n_fallback_rows < kept.n_rows
    assert pq.read_table(kept.lists_path).equals(pq.read_table(trained.lists_path))


def test_gate_promotes_a_better_challenger(lake, tmp_path):
    registry = Registry(tmp_path)
    bad = lake.model_copy(update={"model": BAD})
    _, snapshot, trained, metrics = nightly_steps(bad, "run-bad")
    registry.register("run-bad", trained.model_path, bad, snapshot.snapshot_id, metrics)
    registry.promote("run-bad", "first")

    good = lake.model_copy(update={"model": GOOD})
    as_of_time, _, _, good_metrics = nightly_steps(good, "run-good")
    decision = gate(good, as_of_time, good_metrics, registry.champion())
    assert decision["decision"] == PROMOTE, decision
    assert decision["challenger"] > decision["champion"] + good.model.gate_tolerance
    # a tolerance larger than the gap keeps a worse challenger in too
    lenient = bad.model_copy(update={"model": BAD.model_copy(update={"gate_tolerance": 1.0})})
    registry.register("run-good", trained.model_path, good, None, good_metrics)
    registry.promote("run-good", "better")
    assert gate(lenient, as_of_time, metrics, registry.champion())["decision"] == PROMOTE


def test_registry_keeps_config_snapshot_metrics_and_code_version(lake, tmp_path):
    registry = Registry(tmp_path)
    assert registry.champion() is None
    good = lake.model_copy(update={"model": GOOD})
    as_of_time, snapshot, trained, metrics = nightly_steps(good, "r1")
    assert gate(good, as_of_time, metrics, None)["reason"] == "no champion yet"
    record = registry.register("r1", trained.model_path, good, snapshot.snapshot_id, metrics)
    registry.promote("r1", "no champion yet")
    champion = registry.champion()
    assert champion.model_id == "r1" and champion.name == "itemknn"
    meta = champion.meta
    assert meta["snapshot_id"] == snapshot.snapshot_id
    assert meta["metrics"]["global_time"]["model"]["ndcg@10"] > 0
    assert meta["config"]["model"]["name"] == "itemknn"
    assert meta["code_version"] == code_version() and meta["code_version"] != "unknown"
    assert champion.config(lake).model == good.model
    assert (tmp_path / "models" / "r1" / "model.pt").exists()
    assert record.load().S is not None
    history = (tmp_path / "models" / "champion_history.jsonl").read_text().splitlines()
    assert len(history) == 1


def below_the_floor(metrics):
    """The metrics of a challenger 0.01 NDCG@10 below decayed popularity on the same
    backtest (the backtest itself is real; only the challenger's figure is set)."""
    result = metrics["global_time"]
    model = {**result["model"], "ndcg@10": result["popularity"]["ndcg@10"] - 0.01}
    return {**metrics, "global_time": {**result, "model": model}}


def test_a_challenger_below_popularity_is_never_published(lake, tmp_path):
    registry = Registry(tmp_path)
    good = lake.model_copy(update={"model": GOOD})
    _, snapshot, trained, metrics = nightly_steps(good, "run-good")
    assert (
        metrics["global_time"]["model"]["ndcg@10"] > metrics["global_time"]["popularity"]["ndcg@10"]
    )
    # no champion: the popularity lists are published, with a warning
    weak = lake.model_copy(update={"model": GOOD.model_copy(update={"neighbours": 5})})
    as_of_time, snapshot, _, weak_metrics = nightly_steps(weak, "run-weak")
    decision = gate(weak, as_of_time, below_the_floor(weak_metrics), None)
    assert decision["decision"] == POPULARITY, decision
    assert "below decayed popularity" in decision["warning"]
    assert decision["challenger"] < decision["popularity"]
    lists = popularity_lists(weak, snapshot, "run-weak")
    table = pq.read_table(lists.lists_path)
    assert set(table["source"].to_pylist()) == {"fallback"}
    assert lists.n_users == snapshot.n_users and lists.model == "popularity"

    # a champion that clears the floor is published instead of the weak challenger
    registry.register("run-good", trained.model_path, good, snapshot.snapshot_id, metrics)
    registry.promote("run-good", "first")
    decision = gate(weak, as_of_time, below_the_floor(weak_metrics), registry.champion())
    assert decision["decision"] == KEEP, decision
    assert decision["champion"] >= decision["popularity"] > decision["challenger"]
    assert "champion" in decision["warning"]
