"""The evaluation split SQL (sql/evaluation) on tiny hand-built event tables."""

from datetime import UTC, datetime, timedelta

import pytest

from decayrec.config import DecayConfig
from decayrec.evaluation.backtest import split_on
from decayrec.lake.features import prepare_decay_tables
from decayrec.lake.session import LakeSession
from decayrec.sqlfiles import sql

AS_OF = datetime(2024, 6, 1, tzinfo=UTC)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
DECAY = DecayConfig(type_weights={"view": 1.0, "purchase": 5.0, "ignored": 0.0})


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def make_con(events):
    """events: (user_id, item_id, event_type, event_ts) tuples."""
    lake = LakeSession.connect()
    lake.con.execute(
        "create table events (user_id varchar, item_id varchar, event_type varchar, "
        "event_ts timestamptz, value double)"
    )
    lake.con.executemany("insert into events values (?, ?, ?, ?, null)", [tuple(e) for e in events])
    build = lake.build()
    prepare_decay_tables(build, DECAY)
    split_on(build, "from events")
    return build


def holdout(con, min_user_events: int, holdout_items: int) -> dict[str, set[tuple[str, datetime]]]:
    """user -> {(item_id, last_ts)} of the held-out items."""
    rows = con.execute(
        sql("evaluation/user_time_holdout"),
        {"as_of": AS_OF, "min_user_events": min_user_events, "holdout_items": holdout_items},
    ).fetchall()
    out: dict[str, set[tuple[str, datetime]]] = {}
    for user, item, last_ts in rows:
        key = (item, last_ts)
        assert key not in out.get(user, set()), "an item is held out twice"
        out.setdefault(user, set()).add(key)
    return out


USER_TIME_EVENTS = [
    # u1: 6 counted events on 5 distinct items
    ("u1", "1", "view", day(1)),
    ("u1", "2", "view", day(2)),
    ("u1", "3", "purchase", day(3)),
    ("u1", "9", "view", day(5)),
    ("u1", "10", "view", day(5)),  # same time as '9': '10' is the larger id numerically
    ("u1", "2", "view", day(6)),  # item 2's last touch is day 6
    ("u1", "4", "ignored", day(7)),  # weight-0 type: not an event of the model
    ("u1", "5", "view", AS_OF),  # at as_of: not before it
    ("u1", "6", "view", AS_OF + timedelta(days=1)),
    # u2: 3 counted events; the ignored and future ones would lift it to 6
    ("u2", "a", "view", day(1)),
    ("u2", "a", "view", day(2)),
    ("u2", "b", "view", day(3)),
    ("u2", "c", "ignored", day(4)),
    ("u2", "d", "ignored", day(5)),
    ("u2", "e", "view", AS_OF + timedelta(hours=1)),
    # u3: exactly 4 counted events; non-numeric ids tie at day 9
    ("u3", "x", "view", day(1)),
    ("u3", "y", "view", day(2)),
    ("u3", "p", "view", day(9)),
    ("u3", "q", "view", day(9)),
]


def test_user_time_last_items_with_numeric_tie_break():
    con = make_con(USER_TIME_EVENTS)
    got = holdout(con, min_user_events=4, holdout_items=2)
    # u1: item 2 (day 6), then the day-5 tie goes to '10' (10 > 9), not '9' ('9' > '10' as text)
    assert got["u1"] == {("10", day(5)), ("2", day(6))}
    # u3: string ids tie at day 9: larger id first, so 'q' and 'p' both fit
    assert got["u3"] == {("p", day(9)), ("q", day(9))}
    # u2 has 3 events of the model's types (< 4); ignored-type and future events do not count
    assert set(got) == {"u1", "u3"}


def test_user_time_tie_break_at_the_boundary():
    con = make_con(USER_TIME_EVENTS)
    got = holdout(con, min_user_events=4, holdout_items=3)
    assert got["u1"] == {("9", day(5)), ("10", day(5)), ("2", day(6))}
    # u3, 3 items: p, q and then y
    assert got["u3"] == {("y", day(2)), ("p", day(9)), ("q", day(9))}
    one = holdout(con, min_user_events=4, holdout_items=1)
    assert one["u3"] == {("q", day(9))}
    assert one["u1"] == {("2", day(6))}


def test_user_time_min_events_counts_events_not_items():
    con = make_con(USER_TIME_EVENTS)
    # u2 has 3 events on 2 distinct items: in at 3, out at 4
    assert set(holdout(con, min_user_events=3, holdout_items=5)) == {"u1", "u2", "u3"}
    assert set(holdout(con, min_user_events=5, holdout_items=5)) == {"u1"}
    assert set(holdout(con, min_user_events=7, holdout_items=5)) == set()
    # all five distinct pre-as-of items of u1 when 5 are asked for (4: ignored, 5/6: too late)
    got = holdout(con, min_user_events=3, holdout_items=5)
    assert got["u1"] == {
        ("1", day(1)),
        ("3", day(3)),
        ("9", day(5)),
        ("10", day(5)),
        ("2", day(6)),
    }
    # u2: two distinct items, a's last touch is day 2
    assert got["u2"] == {("a", day(2)), ("b", day(3))}


CUTOFF = day(10)

GLOBAL_TIME_EVENTS = [
    # u1: history a, b; after the cutoff a again (not new), c twice, d exactly at the cutoff
    ("u1", "a", "view", day(1)),
    ("u1", "b", "purchase", day(2)),
    ("u1", "a", "view", day(11)),
    ("u1", "c", "view", day(12)),
    ("u1", "c", "view", day(14)),
    ("u1", "d", "view", CUTOFF),
    ("u1", "e", "view", AS_OF),  # at as_of: excluded
    ("u1", "f", "ignored", day(13)),  # weight-0 type: excluded
    # u2: no history before the cutoff
    ("u2", "a", "view", day(11)),
    # u3: only a weight-0 event before the cutoff, so no history
    ("u3", "a", "ignored", day(1)),
    ("u3", "z", "view", day(12)),
    # u4: history, nothing new after
    ("u4", "a", "view", day(3)),
    ("u4", "a", "view", day(12)),
    # u5: an item seen before only through a weight-0 type counts as new
    ("u5", "b", "view", day(4)),
    ("u5", "g", "ignored", day(5)),
    ("u5", "g", "view", day(15)),
]


def test_global_time_truth_only_new_items_for_users_with_history():
    con = make_con(GLOBAL_TIME_EVENTS)
    rows = con.execute(
        sql("evaluation/global_time_truth"), {"as_of": AS_OF, "cutoff": CUTOFF}
    ).fetchall()
    assert sorted(rows) == [
        ("u1", "c", day(12)),  # first touch after the cutoff
        ("u1", "d", CUTOFF),  # at the cutoff counts as after
        ("u5", "g", day(15)),
    ]


def test_global_time_truth_follows_the_cutoff():
    con = make_con(GLOBAL_TIME_EVENTS)
    # cutoff one day later: d (day 10) becomes history; u2 still has none before day 11
    rows = con.execute(
        sql("evaluation/global_time_truth"), {"as_of": AS_OF, "cutoff": day(11)}
    ).fetchall()
    assert sorted(rows) == [("u1", "c", day(12)), ("u5", "g", day(15))]


def cutoff_of(events, test_fraction: float):
    con = make_con(events)
    return con.execute(
        sql("evaluation/global_time_cutoff"), {"as_of": AS_OF, "test_fraction": test_fraction}
    ).fetchall()[0][0]


def ten_events():
    # ten counted events on days 1..10, plus ones that must not count
    events = [("u1", f"i{n}", "view", day(n)) for n in range(1, 11)]
    events += [("u2", f"x{n}", "ignored", day(20 + n)) for n in range(10)]
    events += [("u2", f"y{n}", "view", AS_OF + timedelta(days=n)) for n in range(10)]
    return events


def test_global_time_cutoff_ignores_weightless_and_late_events():
    # half of the ten counted events: day 5 or 6 (counting the ten weight-0 events on days
    # 20..29 or the ten at/after as_of would move it to day 10 or later)
    assert cutoff_of(ten_events(), 0.5) == day(6)
    assert cutoff_of([("u1", "x", "ignored", day(1))], 0.1) is None


# Regression: the cutoff once was quantile_disc(ts, 1 - f), the last *training* event, which
# put one extra event in the test window (events >= cutoff).
@pytest.mark.parametrize(("test_fraction", "expected_day"), [(0.1, 10), (0.2, 9), (0.5, 6)])
def test_global_time_cutoff_leaves_test_fraction_at_or_after_it(test_fraction, expected_day):
    events = ten_events()
    cutoff = cutoff_of(events, test_fraction)
    counted = [e for e in events if e[2] == "view" and e[3] < AS_OF]
    assert sum(e[3] >= cutoff for e in counted) == round(test_fraction * len(counted))
    assert cutoff == day(expected_day)
