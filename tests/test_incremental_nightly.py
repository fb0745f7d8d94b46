"""The incremental nightly (decayrec.scoring.incremental) through real flow runs on tiny data:
a refit night, then an incremental night that re-scores the users with new events and
carries the other lists forward."""

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from decayrec.config import DecayrecConfig
from decayrec.evaluation.champion import Registry
from decayrec.lake.matrix import SNAPSHOT_META, InteractionMatrix, read_snapshot, snapshot_dir
from decayrec.scoring.incremental import (
    INCREMENTAL,
    REFIT,
    PublishedState,
    carry_condition,
    changed_rows,
    plan_night,
    read_state,
    scoring_key,
    write_state,
)
from decayrec.scoring.lists import score_saved_model
from flows.nightly import nightly

NIGHT_1, NIGHT_2 = date(2024, 3, 1), date(2024, 3, 2)
CHANGED = ["u0", "u1"]  # their new events (between the two nights) are of another group
COLUMNS = ["user_id", "rank", "item_id", "score", "source", "score_pct"]


def write_events(folder: Path) -> Path:
    """30 users in 3 taste groups of 10 items, 6 views each in January and February, and
    u30 with 2 views; on the day of NIGHT_1 (only night 2 sees it) u0 and u1 view 5 items
    of the next group and a new user u31 views a new item i99."""
    rows = ["user_id,item_id,event_type,event_ts,value"]
    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    late = int(datetime(2024, 3, 1, 12, tzinfo=UTC).timestamp())
    for user in range(30):
        group = user % 3
        for j in range(6):
            item = group * 10 + (user + j) % 10
            rows.append(f"u{user},i{item},view,{start + j * 7 * 86400 + user * 3600},")
    for j in range(2):  # fewer than min_history items: popularity, re-scored every night
        rows.append(f"u30,i{j},view,{start + j * 86400},")
    for user in (0, 1):
        other = (user % 3 + 1) % 3
        for j in range(5):
            rows.append(f"u{user},i{other * 10 + j},view,{late + j * 60},")
    for j, item in enumerate(["i0", "i1", "i99"]):  # a new user and a new item on night 2
        rows.append(f"u31,{item},view,{late + j * 60},")
    path = folder / "events.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def config_for(data_dir: Path, events: Path, **model: object) -> DecayrecConfig:
    return DecayrecConfig.model_validate(
        {
            "data_dir": data_dir,
            "sources": [{"path": str(events)}],
            "k": 3,
            "evaluation": {"protocols": ["user_time"]},
            "use_tuned": False,
            "model": {"name": "ease", **model},
            "retention": {"keep_runs": 1},  # the live run and the champion are kept anyway
        }
    )


def published(config: DecayrecConfig, as_of: date) -> pa.Table:
    with duckdb.connect(str(Path(config.data_dir) / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(
            f"select {', '.join(COLUMNS)} from recommendations where as_of_date = $as_of "
            "order by user_id, rank",
            params={"as_of": as_of},
        ).to_arrow_table()


def run_snapshot(config: DecayrecConfig, run_id: str):
    with duckdb.connect(str(Path(config.data_dir) / "warehouse.duckdb"), read_only=True) as con:
        (snapshot_id,) = con.execute(
            "select snapshot_id from recommendation_runs where run_id = ?", [run_id]
        ).fetchone()
    return read_snapshot(
        snapshot_dir(config.data_dir, snapshot_id) / SNAPSHOT_META, config.data_dir
    )


def by_user(table: pa.Table) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for row in table.sort_by([("user_id", "ascending"), ("rank", "ascending")]).to_pylist():
        entry = (row["item_id"], row["source"], row["score"], row["score_pct"])
        out.setdefault(row["user_id"], []).append(entry)
    return out


def assert_same_lists(a: pa.Table, b: pa.Table) -> None:
    a, b = by_user(a), by_user(b)
    assert a.keys() == b.keys()
    for user in a:
        assert [r[:2] for r in a[user]] == [r[:2] for r in b[user]], user
        for column in (2, 3):  # score, score_pct
            got, want = [r[column] for r in a[user]], [r[column] for r in b[user]]
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=user)


@pytest.fixture(scope="module")
def nights(tmp_path_factory, prefect_harness):
    folder = tmp_path_factory.mktemp("incremental")
    events = write_events(folder)
    config = config_for(folder / "data", events, refit_every_days=7)
    first = nightly(as_of=NIGHT_1, config=config)
    second = nightly(as_of=NIGHT_2, config=config)
    return config, events, folder, first, second


def test_a_refit_night_equals_the_nightly_that_refits_every_night(nights):
    config, events, folder, first, _ = nights
    assert first["summary"]["night"] == "refit"
    every_night = config_for(folder / "every_night", events)
    assert every_night.model.refit_every_days == 1
    full = nightly(as_of=NIGHT_1, config=every_night)
    assert full["summary"]["night"] == "refit"
    assert published(config, NIGHT_1).equals(published(every_night, NIGHT_1))


def test_the_incremental_night_equals_a_full_rescore_with_the_same_model(nights):
    config, _, _, first, second = nights
    summary = second["summary"]
    assert summary["night"].startswith("incremental: ")
    assert (
        "train" not in summary["stage_seconds"] and "score-incremental" in summary["stage_seconds"]
    )
    tonight = published(config, NIGHT_2)
    assert summary["users"] == 32 and len(set(tonight["user_id"].to_pylist())) == 32
    # the same model (night 1's, the champion) scoring every user on night 2's snapshot
    record = Registry(config.data_dir).get(first["run_id"])
    full = score_saved_model(config, record, run_snapshot(config, second["run_id"]), "check")
    full_lists = pa.parquet.read_table(full.lists_path, columns=COLUMNS)
    assert_same_lists(tonight, full_lists)


def test_users_with_new_events_get_fresh_lists_and_the_others_keep_theirs(nights):
    config, _, _, _, second = nights
    night = second["metrics"]["night"]
    before, after = by_user(published(config, NIGHT_1)), by_user(published(config, NIGHT_2))
    assert set(after) == set(before) | {"u31"}
    assert {r[1] for r in before["u30"]} == {"fallback"}
    for user in CHANGED:  # their new items are another group's: a different list
        assert [r[0] for r in after[user]] != [r[0] for r in before[user]], user
    # carried lists: the same items, sources and scores; score_pct for the grown catalogue
    carried = [u for u in before if [r[:3] for r in before[u]] == [r[:3] for r in after[u]]]
    # every user but the changed ones and those with popularity rows is carried, unchanged
    expected = [u for u in before if u not in CHANGED and all(r[1] == "model" for r in before[u])]
    assert sorted(carried) == sorted(expected) and len(expected) >= 20
    assert "u30" not in expected and len(after) == 32
    assert night["carried"] == len(expected) and night["rescored"] == 32 - len(expected)
    assert second["summary"]["night"] == (
        f"incremental: {32 - len(expected)} of 32 users re-scored, {len(expected)} carried"
    )


def test_retention_keeps_what_the_next_night_needs_and_without_it_the_night_refits(
    nights, tmp_path
):
    config, _, _, first, second = nights
    state, why = read_state(config, second["run_id"])  # after night 2's retention (keep 1)
    assert why == "" and state.model_id == first["run_id"] and state.as_of == "2024-03-02"
    assert state.refit_as_of == NIGHT_1.isoformat()  # an incremental night keeps the date
    assert Registry(config.data_dir).get(first["run_id"]).model_path.is_file()
    none, why = read_state(config, "never-published")
    assert none is None and "left no published.json" in why
    elsewhere = DecayrecConfig(data_dir=tmp_path)  # the lists are there, the snapshot is not
    write_state(elsewhere, dataclasses.replace(state, run_id="r"))
    (tmp_path / "runs" / "r" / state.lists).write_bytes(b"")
    none, why = read_state(elsewhere, "r")
    assert none is None and "cannot be used" in why
    night = plan_night(config, date(2024, 3, 3), none, why, champion_id=first["run_id"])
    assert night.kind == REFIT and "cannot be used" in night.reason


def _state(**changes: object) -> PublishedState:
    config = DecayrecConfig.model_validate({"model": {"name": "ease", "refit_every_days": 7}})
    fields = {
        "run_id": "r1",
        "as_of": "2024-03-01",
        "snapshot_id": "s1",
        "lists": "lists.parquet",
        "model_id": "r1",
        "refit_as_of": "2024-03-01",
        "scoring_key": scoring_key(config),
    }
    return PublishedState(**{**fields, **changes})


@pytest.mark.parametrize(
    ("as_of", "changes", "champion", "kind", "why"),
    [
        (date(2024, 3, 2), {}, "r1", INCREMENTAL, "1 of 7 days"),
        (date(2024, 3, 8), {}, "r1", REFIT, "7 days ago"),
        (date(2024, 3, 1), {}, "r1", REFIT, "not after"),
        (date(2024, 3, 2), {}, "r2", REFIT, "champion is r2"),
        (date(2024, 3, 2), {"model_id": None}, None, REFIT, "popularity"),
        (date(2024, 3, 2), {"scoring_key": {"k": 5}}, "r1", REFIT, "settings changed"),
    ],
)
def test_the_night_is_refit_on_schedule_or_when_anything_the_lists_depend_on_changed(
    as_of, changes, champion, kind, why
):
    config = DecayrecConfig.model_validate({"model": {"name": "ease", "refit_every_days": 7}})
    night = plan_night(config, as_of, _state(**changes), champion_id=champion)
    assert night.kind == kind and why in night.reason
    assert plan_night(config, as_of, None, "no state").kind == REFIT
    every_night = DecayrecConfig()
    assert plan_night(every_night, as_of, _state(), champion_id="r1").kind == REFIT


def test_the_carry_condition_names_what_makes_a_carried_list_stale():
    assert carry_condition(DecayrecConfig()) is None  # user_last reference: no date in rows
    assert (
        carry_condition(
            DecayrecConfig.model_validate({"decay": {"kernel": "none", "reference": "as_of"}})
        )
        is None
    )
    as_of = DecayrecConfig.model_validate({"decay": {"reference": "as_of"}})
    assert "every weight changes with the date" in carry_condition(as_of)
    sasrec = DecayrecConfig.model_validate({"model": {"name": "sasrec"}})
    assert "as-of time" in carry_condition(sasrec)
    content = DecayrecConfig.model_validate({"content": {"enabled": True}})
    assert "content" in carry_condition(content)


def _matrix(entries: dict[tuple[str, str], tuple[float, float]], users, items):
    """An InteractionMatrix of (user, item) -> (weight, time), rows sorted by user."""
    keys = sorted(entries, key=lambda k: (users.index(k[0]), items.index(k[1])))
    return InteractionMatrix(
        user_ids=np.array(users, dtype=object),
        item_ids=np.array(items, dtype=object),
        rows=np.array([users.index(u) for u, _ in keys], dtype=np.int64),
        cols=np.array([items.index(i) for _, i in keys], dtype=np.int64),
        weights=np.array([entries[k][0] for k in keys]),
        popularity=np.ones(len(items)),
        times=np.array([entries[k][1] for k in keys]),
    )


def test_changed_rows_finds_every_kind_of_change_and_only_those():
    """Matched by (user, item) whatever the users' and items' positions tonight."""
    before = {
        ("same", "a"): (1.0, 10.0),
        ("same", "b"): (2.0, 11.0),
        ("added", "a"): (1.0, 10.0),
        ("dropped", "a"): (1.0, 10.0),
        ("dropped", "b"): (1.0, 10.0),
        ("reweighted", "b"): (1.0, 10.0),
        ("retimed", "b"): (1.0, 10.0),
        ("lost_item", "gone"): (1.0, 10.0),
        ("lost_item", "a"): (1.0, 10.0),
        ("left", "a"): (1.0, 10.0),
    }
    tonight = {
        ("same", "a"): (1.0, 10.0),
        ("same", "b"): (2.0, 11.0),
        ("added", "a"): (1.0, 10.0),
        ("added", "c"): (0.5, 12.0),
        ("dropped", "a"): (1.0, 10.0),
        ("reweighted", "b"): (1.5, 10.0),
        ("retimed", "b"): (1.0, 13.0),
        ("lost_item", "a"): (1.0, 10.0),
        ("newcomer", "c"): (1.0, 12.0),
    }
    previous = _matrix(
        before,
        ["left", "lost_item", "retimed", "reweighted", "dropped", "added", "same"],
        ["gone", "b", "a"],
    )
    users = ["same", "added", "dropped", "reweighted", "retimed", "lost_item", "newcomer"]
    matrix = _matrix(tonight, users, ["a", "b", "c"])
    changed = dict(zip(users, changed_rows(previous, matrix).tolist(), strict=True))
    assert changed == {
        "same": False,
        "added": True,
        "dropped": True,
        "reweighted": True,
        "retimed": True,
        "lost_item": True,
        "newcomer": True,
    }
