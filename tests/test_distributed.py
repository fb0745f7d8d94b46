"""The item side fitted by map-reduce over user shards (decayrec.scoring.distributed): the
shards' sums equal the whole's, and a nightly on a real 3-worker local Dask cluster
(features, fit and scoring by user shards) builds the single process's snapshot and lists.
Data: MovieLens-small cut to its 600 most-rated movies, every user (tests/ops_data.py; a
full-catalogue EASE solve takes ~25 s here)."""

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from ops_data import small_config, write_movielens_subset
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

from decayrec.lake.features import build_snapshot
from decayrec.lake.ingest import load_batches, stage_sources
from decayrec.lake.matrix import load_snapshot
from decayrec.models import EASE, IALS, ItemKNN
from decayrec.models.base import positive_mean
from decayrec.scoring.distributed import plan_fit, shard_users, user_rows
from decayrec.scoring.lists import train_and_score
from flows.nightly import nightly

AS_OF = date(2018, 9, 28)


@pytest.fixture(scope="module")
def subset(movielens_dir, tmp_path_factory):
    return write_movielens_subset(movielens_dir, tmp_path_factory.mktemp("ml600"))


@pytest.fixture(scope="module")
def lake(subset, tmp_path_factory):
    config = small_config(subset, tmp_path_factory.mktemp("lake"))
    load_batches(config, stage_sources(config, "load"), "load")
    return config, build_snapshot(config, config.as_of_time(AS_OF))


def shard_parts(model, matrix, n_shards):
    scale = positive_mean(matrix.weights)
    parts = [
        model.user_sums(user_rows(matrix, shard_users(matrix, s, n_shards)), scale)
        for s in range(n_shards)
    ]
    sums = {key: sum(part[key] for part in parts) for key in parts[0]}
    return sums, scale, parts


@pytest.mark.parametrize(
    "make",
    [
        lambda: EASE(l2=50.0),
        lambda: EASE(pair_half_life_days=30.0),
        lambda: ItemKNN(similarity="cosine"),
    ],
    ids=["ease", "ease-gap-decayed", "itemknn"],
)
def test_shard_sums_add_up_to_the_single_process_fit(lake, make):
    config, snapshot = lake
    matrix = load_snapshot(snapshot)
    model = make()
    whole = model.user_sums(matrix, positive_mean(matrix.weights))
    sums, scale, parts = shard_parts(model, matrix, 3)
    # every user in exactly one shard, and no shard empty
    sizes = [len(shard_users(matrix, s, 3)) for s in range(3)]
    assert sum(sizes) == snapshot.n_users and min(sizes) > 150
    for key in whole:
        assert whole[key].dtype == torch.float64  # 600 items: summed in float64
        assert not torch.equal(parts[0][key], whole[key])  # a shard alone is not the whole
        # the same sums in another order of users: equal once in float32, as the fit uses them
        assert torch.equal(sums[key].float(), whole[key].float()), key
    single = make().fit(matrix)
    sharded = make().fit_sums(sums, scale, matrix.item_ids)
    x = torch.from_numpy(np.ones((1, matrix.shape[1]), dtype=np.float32))
    assert torch.equal(sharded.score(x), single.score(x))


def test_models_that_are_no_sum_over_users_fit_in_one_process(lake, tmp_path):
    config, snapshot = lake
    assert not IALS().summable(snapshot.n_items)
    ials = config.model_validate({**config.model_dump(), "model": {"name": "ials"}})
    assert plan_fit(ials, snapshot, 3, tmp_path) is None
    # item-item whose co-occurrences do not fit whole in memory_mb is fitted block by block
    assert not ItemKNN(memory_mb=1.0).summable(snapshot.n_items)
    # the budget counts the float64 sums: 1,000 items need 8 MB (+ 1 MB of blocks), not 4
    assert not ItemKNN(memory_mb=5.0).summable(1000)
    assert ItemKNN(memory_mb=9.0).summable(1000)
    with pytest.raises(NotImplementedError, match="ials does not fit by sums"):
        IALS().user_sums(load_snapshot(snapshot), 1.0)


def task_names(parent_run_id, flow_name):
    """The task runs (names without their number) of the child flow run `flow_name`."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_run_id])
            )
        )
        [child] = [run for run in children if client.read_flow(run.flow_id).name == flow_name]
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [child.id]}))
        return sorted(r.name.rsplit("-", 1)[0] for r in runs)


def test_nightly_on_three_dask_workers_publishes_the_single_process_lists(
    prefect_harness, lake, tmp_path
):
    config, snapshot = lake
    dask = config.model_validate(
        {
            **config.model_dump(),
            "orchestration": {"score_shards": 3, "task_runner": "dask", "dask_workers": 3},
        }
    )
    # the snapshot the single process built, set aside: the nightly builds it by shards
    one_process = tmp_path / "one-process"
    shutil.move(snapshot.path, one_process)
    result = nightly(as_of=AS_OF, config=dask)
    assert result["status"] == "succeeded"
    # features: three map tasks; the fit: three map tasks and a reduce; three scoring shards
    assert task_names(result["run_id"], "features-shards") == ["features-shard"] * 3
    assert task_names(result["run_id"], "fit-and-score-shards") == (
        ["fit-reduce"] + ["fit-shard"] * 3 + ["score-shard"] * 3
    )
    for name in ("matrix.parquet", "users.parquet", "user_decay.parquet"):
        assert pq.read_table(Path(snapshot.path) / name).equals(pq.read_table(one_process / name))
    items = pq.read_table(Path(snapshot.path) / "items.parquet")
    one_items = pq.read_table(one_process / "items.parquet")
    assert items["item_id"].equals(one_items["item_id"])  # popularity: sums in another order
    np.testing.assert_allclose(items["popularity"], one_items["popularity"], rtol=1e-12)
    single = pq.read_table(train_and_score(config, snapshot, "single").lists_path)
    got = pq.read_table(config.data_dir / "runs" / result["run_id"] / "lists.parquet")
    assert got.num_rows == single.num_rows == config.k * snapshot.n_users
    for column in ("user_id", "rank", "item_id", "source", "because_items"):
        assert got[column].equals(single[column]), column
    # the reduce solves on this machine's cores, as one process does: the same scores
    assert got["score"].equals(single["score"])
