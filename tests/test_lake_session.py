"""The lake session: one owner of the lake's temp tables (decayrec.lake.session)."""

import duckdb
import pyarrow as pa
import pytest
from drift_data import AS_OF, drift_events

from decayrec.config import DecayConfig, DecayrecConfig, EvaluationConfig
from decayrec.evaluation.backtest import backtest
from decayrec.lake.features import compute_features
from decayrec.lake.ingest import open_lake
from decayrec.lake.session import LakeSession


def temp_objects(lake: LakeSession) -> list[str]:
    """Every temp table, view and macro on the session's connection."""
    return [
        name
        for (name,) in lake.con.execute(
            "select table_name from duckdb_tables() where temporary "
            "union all select view_name from duckdb_views() where temporary and not internal "
            "union all select function_name from duckdb_functions() "
            "where database_name = 'temp' and not internal"
        ).fetchall()
    ]


@pytest.fixture()
def lake():
    session = LakeSession.connect()
    session.con.execute("create table events as select 'u1' as user_id, 'a' as item_id")
    yield session
    session.close()


def test_a_second_build_cannot_see_the_first_builds_tables(lake):
    with lake.build() as first:
        first.table("truth", "from events")
        first.view("source_events", "from truth")
        first.arrow("given", pa.table({"x": [1, 2]}))
        assert first.execute("select count(*) from source_events").fetchall() == [(1,)]
        assert sorted(first.names()) == ["given", "source_events", "truth"]
    with lake.build() as second:
        for name in ("truth", "source_events", "given"):
            with pytest.raises(duckdb.CatalogException):
                second.execute(f"from {name}")
        # the lake's own tables are still there
        assert second.execute("select count(*) from events").fetchall() == [(1,)]


def test_a_build_drops_every_temp_object_it_made(lake):
    config = DecayrecConfig(decay=DecayConfig(type_weights={"view": 1.0}))
    lake.con.execute(
        "create or replace table events as select 'u1' as user_id, 'a' as item_id, "
        "'view' as event_type, timestamptz '2024-01-01' as event_ts, null::double as value"
    )
    with lake.build() as build:
        build.view("source_events", "from events")
        matrix = compute_features(build, config, AS_OF)
        made = set(temp_objects(lake))
        assert {"source_events", "type_params", "user_memory", "decay_kernel"} <= made
        assert {"interactions", "user_index", "item_index"} <= made
    assert matrix.shape == (1, 1)
    assert temp_objects(lake) == []
    assert build.closed


def test_a_build_that_raises_still_drops_its_tables(lake):
    with pytest.raises(ValueError, match="midway"), lake.build() as build:
        build.table("training_events", "from events")
        build.empty_table("type_params", "event_type varchar, weight double")
        raise ValueError("midway")
    assert temp_objects(lake) == []
    with lake.build() as again:  # the session goes on
        with pytest.raises(duckdb.CatalogException):
            again.execute("from training_events")


def test_a_failing_statement_leaves_nothing_behind(lake):
    with pytest.raises(duckdb.Error), lake.build() as build:
        build.table("truth", "from events")
        build.table("training_events", "select no_such_column from events")
    assert temp_objects(lake) == []


def test_one_build_at_a_time_and_nothing_made_outside_a_build(lake):
    build = lake.build()
    with pytest.raises(RuntimeError, match="open"):
        lake.build()
    build.close()
    with pytest.raises(RuntimeError, match="ended"):
        build.table("late", "from events")
    lake.con.execute("create temp table stray as from events")
    with pytest.raises(RuntimeError, match="table stray"):
        lake.build()


def test_names_are_plain_and_one_kind(lake):
    with lake.build() as build:
        with pytest.raises(ValueError, match="plain identifier"):
            build.table("x; drop table events", "from events")
        build.table("truth", "from events")
        with pytest.raises(ValueError, match="already a temp table"):
            build.view("truth", "from events")


def make_lake(path) -> DecayrecConfig:
    events, _ = drift_events(n_users=120, events_per_user=30)
    config = DecayrecConfig(
        data_dir=path, evaluation=EvaluationConfig(protocols=["global_time", "user_time"])
    )
    con = open_lake(config)
    con.register("incoming", events)
    con.execute("insert into events select *, 'drift', 'batch', now() from incoming")
    con.close()
    return config


def test_backtests_in_one_session_give_the_figures_of_fresh_ones(tmp_path):
    """Each backtest is one build: run twice in a session, after another backtest with
    other settings (per-user memories, the other protocol, the validation split), its
    figures are those of a backtest on its own connection."""
    config = make_lake(tmp_path)
    drift = config.model_copy(update={"decay": DecayConfig.model_validate({"user_decay": "drift"})})

    def figures(result: dict) -> dict:
        return {k: v for k, v in result.items() if k != "train_seconds"}

    alone = {
        p: figures(backtest(config, AS_OF, p, "validation")) for p in ("global_time", "user_time")
    }
    with LakeSession.connect(config.lake_path) as lake:
        runs = []
        for _ in range(2):
            backtest(drift, AS_OF, "user_time", "test", lake)
            runs.append(
                {
                    p: figures(backtest(config, AS_OF, p, "validation", lake))
                    for p in ("global_time", "user_time")
                }
            )
            assert temp_objects(lake) == []
    assert runs[0] == runs[1] == alone
    assert alone["user_time"]["model"]["ndcg@10"] > 0
