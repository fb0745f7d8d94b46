"""The sequence model in the nightly flow: its snapshot keeps each user's events, its
lists are published, and a sequence champion can be re-scored on a snapshot built
without sequences (the champion/challenger gate's KEEP path)."""

from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from decayrec.features import build_snapshot
from decayrec.registry import Registry
from decayrec.train import score_saved_model
from flows.nightly import nightly
from tests.ops_data import small_config, write_movielens_subset

AS_OF = date(2018, 10, 1)
SASREC = {"name": "sasrec", "seq_epochs": 2, "seq_len": 20, "seq_history": 40, "seq_dim": 32}


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


def test_a_nightly_run_with_the_sequence_model_publishes_its_lists(sasrec_run):
    config, result = sasrec_run
    assert result["status"] == "succeeded" and result["published"] is True
    with duckdb.connect(str(Path(config.data_dir) / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select count(distinct user_id), count(*) filter (where source = 'model'), "
            "min(model), max(model) from recommendations_latest"
        ).fetchall()[0]
    n_users = n_subset_users(config)
    assert rows[0] == n_users
    assert rows[1] > 0.9 * n_users * config.k
    assert rows[2] == rows[3] == "sasrec"
    snapshot_dirs = list((Path(config.data_dir) / "snapshots").iterdir())
    sequences = pq.read_table(snapshot_dirs[0] / "sequences.parquet")
    per_user = sequences.group_by("user_idx").aggregate([("item_idx", "count")])
    assert per_user.num_rows == n_users
    assert max(per_user["item_idx_count"].to_pylist()) == SASREC["seq_history"]
    # nothing left to resume once a training has finished
    assert not list((Path(config.data_dir) / "checkpoints").glob("*.ckpt"))


def test_a_sequence_champion_is_rescored_on_a_snapshot_without_sequences(sasrec_run):
    config, _ = sasrec_run
    champion = Registry(config.data_dir).champion()
    assert champion is not None and champion.name == "sasrec"
    ease = config.model_copy(update={"model": config.model.model_copy(update={"name": "ease"})})
    as_of_time = ease.as_of_time(AS_OF)
    snapshot = build_snapshot(ease, as_of_time)
    assert not snapshot.has_sequences
    lists = score_saved_model(ease, champion, snapshot, "keep-champion")
    assert lists.model == "sasrec"
    table = pq.read_table(lists.lists_path)
    assert len(table["user_id"].unique()) == n_subset_users(config)
    assert (table["source"].to_numpy(zero_copy_only=False) == "model").mean() > 0.9
    assert datetime.fromisoformat(snapshot.as_of_time) == as_of_time
