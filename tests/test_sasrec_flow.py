"""The sequence model in the nightly flow: its snapshot keeps each user's events, it
scores every user, and a sequence model can be re-scored on a snapshot built without
sequences (the champion/challenger gate's KEEP path). Two epochs leave it below decayed
popularity on this subset, so the gate's popularity floor publishes the popularity lists
instead, with a warning: the flow's floor path, end to end."""

import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from decayrec.config import model_section
from decayrec.evaluation.champion import Registry
from decayrec.lake.features import build_snapshot
from decayrec.scoring.lists import score_saved_model
from flows.nightly import nightly
from tests.ops_data import small_config, write_movielens_subset

AS_OF = date(2018, 10, 1)
SASREC = {
    "name": "sasrec",
    "seq_epochs": 2,
    "seq_len": 20,
    "seq_history": 40,
    "seq_dim": 32,
    "seq_blend": "none",  # the sequence model alone: two epochs stay below popularity
}


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory, movielens_dir, prefect_harness):
    subset = write_movielens_subset(movielens_dir, tmp_path_factory.mktemp("subset"))
    data_dir = tmp_path_factory.mktemp("sasrec")
    config = small_config(subset, data_dir, model=SASREC)
    result = nightly(as_of=AS_OF, config=config)
    return config, result


def n_subset_users(config) -> int:
    with duckdb.connect(str(config.lake_path), read_only=True) as con:
        return con.execute("select count(distinct user_id) from events").fetchall()[0][0]


def test_a_nightly_run_with_the_sequence_model_scores_every_user(sasrec_run):
    config, result = sasrec_run
    assert result["status"] == "succeeded" and result["published"] is True
    n_users = n_subset_users(config)
    # the challenger's own lists: every user, from the model
    lists = pq.read_table(Path(config.data_dir) / "runs" / result["run_id"] / "lists.parquet")
    assert len(lists["user_id"].unique()) == n_users
    assert (lists["source"].to_numpy(zero_copy_only=False) == "model").mean() > 0.9
    # two epochs do not clear decayed popularity: the floor published popularity instead
    with duckdb.connect(str(Path(config.data_dir) / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select count(distinct user_id), count(*) filter (where source = 'model') "
            "from recommendations_latest"
        ).fetchall()[0]
        [(metrics,)] = con.execute(
            "select metrics from recommendation_runs where run_id = ?", [result["run_id"]]
        ).fetchall()
    gate = json.loads(metrics)["gate"]
    assert gate["decision"] == "publish_popularity", gate
    assert gate["challenger"] < gate["popularity"] and "below decayed popularity" in gate["warning"]
    assert rows == (n_users, 0)
    snapshot_dirs = list((Path(config.data_dir) / "snapshots").iterdir())
    sequences = pq.read_table(snapshot_dirs[0] / "sequences.parquet")
    per_user = sequences.group_by("user_idx").aggregate([("item_idx", "count")])
    assert per_user.num_rows == n_users
    assert max(per_user["item_idx_count"].to_pylist()) == SASREC["seq_history"]
    # nothing left to resume once a training has finished
    assert not list((Path(config.data_dir) / "checkpoints").glob("*.ckpt"))


def test_a_sequence_champion_is_rescored_on_a_snapshot_without_sequences(sasrec_run):
    config, result = sasrec_run
    assert Registry(config.data_dir).champion() is None  # the floor promoted nothing
    champion = Registry(config.data_dir).get(result["run_id"])
    assert champion.name == "sasrec"
    ease_model = model_section({**config.model.model_dump(), "name": "ease"})
    ease = config.model_copy(update={"model": ease_model})
    as_of_time = ease.as_of_time(AS_OF)
    snapshot = build_snapshot(ease, as_of_time)
    assert not snapshot.has_sequences
    lists = score_saved_model(ease, champion, snapshot, "keep-champion")
    assert lists.model == "sasrec"
    table = pq.read_table(lists.lists_path)
    assert len(table["user_id"].unique()) == n_subset_users(config)
    assert (table["source"].to_numpy(zero_copy_only=False) == "model").mean() > 0.9
    assert datetime.fromisoformat(snapshot.as_of_time) == as_of_time
