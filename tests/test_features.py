"""compute_interactions on tiny hand-checkable event tables (an in-memory lake)."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from decayrec.config import DecayConfig
from decayrec.lake.features import compute_interactions, read_matrix
from decayrec.lake.session import LakeBuild, LakeSession

AS_OF = datetime(2024, 3, 1, tzinfo=UTC)
WEIGHTS = {"view": 1.0, "click": 1.5, "purchase": 5.0, "ignored": 0.0}


def days_before(days: float, ref: datetime = AS_OF) -> datetime:
    return ref - timedelta(days=days)


def make_con(events) -> LakeBuild:
    """A build on an in-memory lake whose `events` are these (user_id, item_id,
    event_type, event_ts, value) tuples, with source_events pointing at them."""
    lake = LakeSession.connect()
    lake.con.execute(
        "create table events (user_id varchar, item_id varchar, event_type varchar, "
        "event_ts timestamptz, value double)"
    )
    if events:
        lake.con.executemany("insert into events values (?, ?, ?, ?, ?)", list(events))
    build = lake.build()
    build.view("source_events", "select * from events")
    return build


def weights_by_pair(con) -> dict[tuple[str, str], float]:
    rows = con.execute("select user_id, item_id, weight from interactions").fetchall()
    return {(u, i): w for u, i, w in rows}


def decay(**kw) -> DecayConfig:
    """Ages from the as-of instant and no recency weighting unless a test says so: the
    kernels' arithmetic is checked against AS_OF."""
    kw.setdefault("type_weights", WEIGHTS)
    kw.setdefault("reference", "as_of")
    kw.setdefault("recency_events", 0.0)
    return DecayConfig(**kw)


def test_exponential_half_life_gives_half_and_quarter():
    con = make_con(
        [
            ("u1", "a", "view", days_before(10), None),
            ("u1", "b", "purchase", days_before(20), None),
            ("u1", "c", "click", days_before(0.5), None),
        ]
    )
    compute_interactions(con, decay(kernel="exponential", half_life_days=10), AS_OF)
    w = weights_by_pair(con)
    assert w[("u1", "a")] == pytest.approx(0.5 * 1.0, rel=1e-12)
    assert w[("u1", "b")] == pytest.approx(0.25 * 5.0, rel=1e-12)
    assert w[("u1", "c")] == pytest.approx(1.5 * 2 ** (-0.05), rel=1e-12)


def test_events_of_the_same_pair_add_up():
    con = make_con(
        [
            ("u1", "a", "view", days_before(10), None),
            ("u1", "a", "purchase", days_before(20), None),
            ("u1", "a", "click", days_before(0), None),  # exactly at as_of: excluded
        ]
    )
    compute_interactions(con, decay(kernel="exponential", half_life_days=10), AS_OF)
    n_events = con.execute("select n_events from interactions").fetchall()
    assert n_events == [(2,)]
    assert weights_by_pair(con) == {("u1", "a"): pytest.approx(0.5 + 1.25, rel=1e-12)}


def test_events_at_or_after_as_of_are_excluded():
    con = make_con(
        [
            ("u1", "a", "view", AS_OF, None),  # at T
            ("u1", "b", "view", AS_OF + timedelta(days=3), None),  # after T
            ("u2", "a", "view", AS_OF + timedelta(seconds=1), None),  # after T, only event of u2
            ("u1", "c", "view", AS_OF - timedelta(microseconds=1), None),  # just before T
        ]
    )
    compute_interactions(con, decay(half_life_days=10), AS_OF)
    w = weights_by_pair(con)
    assert set(w) == {("u1", "c")}
    assert w[("u1", "c")] == pytest.approx(1.0, rel=1e-9)
    m = read_matrix(con)
    assert list(m.user_ids) == ["u1"]
    assert list(m.item_ids) == ["c"]


def test_kernel_none_gives_the_type_weight_per_event():
    con = make_con(
        [
            ("u1", "a", "view", days_before(1000), None),
            ("u1", "a", "click", days_before(3), None),
            ("u1", "b", "purchase", days_before(50), None),
            ("u2", "b", "click", days_before(0.001), None),
        ]
    )
    compute_interactions(con, decay(kernel="none"), AS_OF)
    assert weights_by_pair(con) == {
        ("u1", "a"): pytest.approx(2.5, rel=1e-12),
        ("u1", "b"): pytest.approx(5.0, rel=1e-12),
        ("u2", "b"): pytest.approx(1.5, rel=1e-12),
    }


def test_zero_weight_and_unlisted_types_are_ignored():
    con = make_con(
        [
            ("u1", "a", "view", days_before(10), None),
            ("u1", "a", "ignored", days_before(10), None),  # weight 0
            ("u1", "b", "ignored", days_before(10), None),  # weight 0, only event of pair
            ("u1", "c", "rating", days_before(10), 4.0),  # not listed in type_weights
            ("u2", "d", "mystery", days_before(1), None),  # unlisted, the only event of u2
        ]
    )
    compute_interactions(con, decay(kernel="exponential", half_life_days=10), AS_OF)
    w = weights_by_pair(con)
    assert w == {("u1", "a"): pytest.approx(0.5, rel=1e-12)}
    assert con.execute("select n_events from interactions").fetchall() == [(1,)]
    m = read_matrix(con)
    assert list(m.user_ids) == ["u1"]
    assert list(m.item_ids) == ["a"]


def test_very_old_event_weighs_zero_but_pair_stays_in_matrix():
    con = make_con([("u1", "new", "view", days_before(10), None)])
    # 1e6 days (~2738 years) is out of Python's datetime range: built in SQL instead
    con.execute(
        "insert into events values ('u1', 'old', 'purchase', $t - to_days(1000000), null)",
        {"t": AS_OF},
    )
    age = con.execute(
        "select (epoch_us($t) - epoch_us(event_ts)) / 86400e6 from events where item_id = 'old'",
        {"t": AS_OF},
    ).fetchall()[0][0]
    assert age == 1e6
    compute_interactions(con, decay(kernel="exponential", half_life_days=10), AS_OF)
    w = weights_by_pair(con)
    assert w[("u1", "old")] == 0.0
    assert not math.isnan(w[("u1", "old")])
    assert w[("u1", "new")] == pytest.approx(0.5, rel=1e-12)

    m = read_matrix(con)
    assert list(m.item_ids) == ["new", "old"]
    assert list(m.rows) == [0, 0]
    assert list(m.cols) == [0, 1]
    assert m.weights[1] == 0.0
    assert not np.isnan(m.weights).any()
    assert list(m.items_per_user()) == [2]
    assert m.popularity[1] == 0.0


def test_user_last_reference_counts_ages_from_each_users_latest_event():
    con = make_con(
        [
            # u1 left 100 days ago: its ages count from its own latest event
            ("u1", "a", "view", days_before(110), None),  # 10 d before u1's last -> 0.5
            ("u1", "b", "view", days_before(100), None),  # u1's last event -> 1
            # u2 was active yesterday
            ("u2", "a", "view", days_before(21), None),  # 20 d before u2's last -> 0.25
            ("u2", "c", "view", days_before(1), None),  # -> 1
            ("u2", "d", "view", AS_OF, None),  # at AS_OF: excluded
        ]
    )
    compute_interactions(
        con, decay(kernel="exponential", half_life_days=10, reference="user_last"), AS_OF
    )
    assert weights_by_pair(con) == {
        ("u1", "a"): pytest.approx(0.5, rel=1e-12),
        ("u1", "b"): pytest.approx(1.0, rel=1e-12),
        ("u2", "a"): pytest.approx(0.25, rel=1e-12),
        ("u2", "c"): pytest.approx(1.0, rel=1e-12),
    }
    # decayed popularity still counts from the as-of instant
    m = read_matrix(con)
    assert list(m.item_ids) == ["a", "b", "c"]
    assert m.popularity == pytest.approx([2**-11 + 2**-2.1, 2**-10, 2**-0.1], rel=1e-12)


def test_score_weights_halve_every_recency_events_later_items_and_ties_share():
    con = make_con(
        [
            ("u1", "a", "view", days_before(3), None),  # 2 items later -> 2^-1
            ("u1", "b", "view", days_before(2), None),  # 1 item later -> 2^-0.5
            ("u1", "c", "view", days_before(1), None),  # latest -> 1
            ("u2", "a", "view", days_before(5), None),  # 2 items later (a tie) -> 2^-1
            ("u2", "b", "view", days_before(4), None),  # tied latest -> 1
            ("u2", "c", "view", days_before(4), None),  # tied latest -> 1
        ]
    )
    compute_interactions(con, decay(kernel="none", recency_events=2.0), AS_OF)
    m = read_matrix(con, AS_OF)
    assert m.weights == pytest.approx([1.0] * 6)  # models learn from unweighted rows
    assert m.score_weights == pytest.approx([0.5, 2**-0.5, 1.0, 0.5, 1.0, 1.0], rel=1e-12)
    assert m.times[2] == pytest.approx(days_before(1).timestamp())
    off = make_con([("u1", "a", "view", days_before(3), None)])
    compute_interactions(off, decay(kernel="none", recency_events=0.0), AS_OF)
    matrix = read_matrix(off, AS_OF)
    assert matrix.row_weights is matrix.score_weights
    assert matrix.score_weights == pytest.approx(matrix.weights)


def test_dense_id_maps_are_in_id_order_and_popularity_is_sum_of_weights():
    con = make_con(
        [
            ("zed", "i3", "view", days_before(10), None),
            ("amy", "i1", "view", days_before(20), None),
            ("amy", "i3", "purchase", days_before(10), None),
            ("mid", "i2", "click", days_before(10), None),
            ("mid", "i3", "view", days_before(20), None),
        ]
    )
    compute_interactions(con, decay(kernel="exponential", half_life_days=10), AS_OF)
    m = read_matrix(con)
    assert list(m.user_ids) == ["amy", "mid", "zed"]
    assert list(m.item_ids) == ["i1", "i2", "i3"]
    assert m.shape == (3, 3)
    # rows sorted; (user_idx, item_idx, weight)
    assert list(m.rows) == [0, 0, 1, 1, 2]
    assert list(m.cols) == [0, 2, 1, 2, 2]
    assert m.weights == pytest.approx([0.25, 2.5, 0.75, 0.25, 0.5], rel=1e-12)
    assert list(m.row_pointer()) == [0, 2, 4, 5]
    # i1: 0.25; i2: 0.75; i3: 2.5 + 0.25 + 0.5
    assert m.popularity == pytest.approx([0.25, 0.75, 3.25], rel=1e-12)
    idx = con.execute("select item_id, item_idx, count_users from item_index").fetchall()
    assert sorted(idx) == [("i1", 0, 1), ("i2", 1, 1), ("i3", 2, 3)]


def test_id_maps_use_string_order():
    # ids are strings: '10' sorts before '9'
    con = make_con(
        [
            ("9", "9", "view", days_before(1), None),
            ("10", "10", "view", days_before(1), None),
            ("2", "10", "view", days_before(1), None),
        ]
    )
    compute_interactions(con, decay(kernel="none"), AS_OF)
    m = read_matrix(con)
    assert list(m.user_ids) == ["10", "2", "9"]
    assert list(m.item_ids) == ["10", "9"]
    assert m.popularity == pytest.approx([2.0, 1.0], rel=1e-12)
