"""Decay kernels, reinforcement, per-type and per-user memory: Python and SQL agree."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from decayrec.config import DecayConfig
from decayrec.lake.decay import KERNELS, effective_half_life, kernel_weight, saturate
from decayrec.lake.features import compute_interactions
from decayrec.lake.session import LakeBuild, LakeSession

AS_OF = datetime(2024, 1, 1, tzinfo=UTC)
HUGE = [1e6, 1e12, 1e300]


@pytest.mark.parametrize(
    ("decay", "ages", "expected"),
    [
        (DecayConfig(kernel="exponential", half_life_days=10), [0, 10, 20], [1, 0.5, 0.25]),
        (
            DecayConfig(kernel="power_law", power_tau_days=10, power_exponent=2),
            [0, 10, 30],
            [1, 0.25, 1 / 16],
        ),
        (
            DecayConfig(kernel="sigmoid", sigmoid_midpoint_days=10, sigmoid_width_days=2),
            [0, 10, 12],
            [1 / (1 + math.exp(-5)), 0.5, 1 / (1 + math.e)],
        ),
        (DecayConfig(kernel="window", window_days=7), [0, 6.99, 7, 8], [1, 1, 0, 0]),
        (DecayConfig(kernel="none"), [0, 1e6], [1, 1]),
    ],
)
def test_kernel_weights_at_hand_checked_ages(decay, ages, expected):
    assert kernel_weight(np.array(ages, float), decay) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernels_are_monotone_and_finite_at_any_age(kernel):
    decay = DecayConfig(kernel=kernel)
    ages = np.concatenate([np.linspace(0, 5000, 2001), HUGE])
    weights = kernel_weight(ages, decay)
    assert np.all(np.isfinite(weights)) and np.all(weights >= 0)
    assert np.all(np.diff(weights) <= 1e-15)
    if kernel != "none":
        assert weights[-1] == pytest.approx(0.0, abs=1e-12)
        # the effective half-life is where K falls to half of K(0)
        half = effective_half_life(decay)
        assert kernel_weight(half, decay) == pytest.approx(weights[0] / 2, rel=1e-9) or (
            kernel == "window"
        )


def test_memory_stretches_the_time_axis():
    decay = DecayConfig(kernel="exponential", half_life_days=10)
    assert kernel_weight(20.0, decay, memory=2.0) == pytest.approx(0.5)
    assert effective_half_life(decay, memory=3.0) == 30.0


def test_saturation_of_repeated_interactions():
    total = np.array([0.0, 1.0, 10.0])
    assert saturate(total, DecayConfig(saturation="none")) == pytest.approx([0, 1, 10])
    assert saturate(total, DecayConfig(saturation="log1p")) == pytest.approx(np.log1p(total))
    assert saturate(total, DecayConfig(saturation="cap", saturation_cap=3)) == pytest.approx(
        [0, 1, 3]
    )


def events_connection(rows) -> LakeBuild:
    """A build on an in-memory lake whose source_events are these rows."""
    build = LakeSession.connect().build()
    build.empty_table(
        "source_events",
        "user_id varchar, item_id varchar, event_type varchar, event_ts timestamptz, value double",
    )
    build.executemany("insert into source_events values (?, ?, ?, ?, null)", rows)
    return build


def weights(con, decay, user_memory=None):
    """The SQL's weights with ages counted from AS_OF (as the Python reference does)."""
    decay = decay.model_copy(update={"reference": "as_of"})
    compute_interactions(con, decay, AS_OF, user_memory)
    return {
        (u, i): w
        for u, i, w in con.execute("select user_id, item_id, weight from interactions").fetchall()
    }


def random_events(n=400, seed=3):
    rng = np.random.default_rng(seed)
    ages = np.concatenate([rng.exponential(200.0, n - 4), [0.0001, 1e5, 3e4, 5e4]])
    types = rng.choice(["view", "click", "purchase"], n)
    users = rng.integers(0, 7, n)
    items = rng.integers(0, 9, n)
    rows = [
        (f"u{u}", f"i{i}", t, AS_OF - timedelta(days=float(a)))
        for u, i, t, a in zip(users, items, types, ages, strict=True)
    ]
    return rows


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("saturation", ["none", "log1p", "cap"])
def test_sql_and_python_agree_to_1e9(kernel, saturation):
    decay = DecayConfig(
        kernel=kernel,
        half_life_days=45,
        power_tau_days=12,
        power_exponent=1.5,
        sigmoid_midpoint_days=100,
        sigmoid_width_days=20,
        window_days=150,
        saturation=saturation,
        saturation_cap=1.7,
        type_weights={"view": 1.0, "click": 2.0, "purchase": 4.0},
        type_memory={"purchase": 3.0},
    )
    rows = random_events()
    memory = {"u1": 0.5, "u2": 2.5}
    given = pa.table(
        {"user_id": list(memory), "memory": list(memory.values()), "drift": [None] * 2}
    )
    got = weights(events_connection(rows), decay, given)
    expected: dict = {}
    for user, item, event_type, ts in rows:
        # the same microsecond arithmetic as the SQL, in days
        age = (AS_OF - ts) / timedelta(microseconds=1) / 86400e6
        m = decay.type_memory.get(event_type, 1.0) * memory.get(user, 1.0)
        w = decay.type_weights[event_type] * float(kernel_weight(age, decay, m))
        expected[(user, item)] = expected.get((user, item), 0.0) + w
    expected = {k: float(saturate(v, decay)) for k, v in expected.items()}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_a_later_interaction_refreshes_interest_and_types_have_their_own_memory():
    decay = DecayConfig(
        kernel="exponential",
        half_life_days=10,
        type_weights={"view": 1.0, "purchase": 2.0},
        type_memory={"purchase": 2.0},
    )
    con = events_connection(
        [
            ("u", "old", "view", AS_OF - timedelta(days=30)),
            ("u", "refreshed", "view", AS_OF - timedelta(days=30)),
            ("u", "refreshed", "view", AS_OF - timedelta(days=1)),
            ("u", "bought", "purchase", AS_OF - timedelta(days=20)),
            ("u", "future", "view", AS_OF + timedelta(seconds=1)),
            ("u", "now", "view", AS_OF),
        ]
    )
    w = weights(con, decay)
    assert w[("u", "old")] == pytest.approx(0.125)
    assert w[("u", "refreshed")] == pytest.approx(0.125 + 2**-0.1)
    assert w[("u", "bought")] == pytest.approx(2 * 0.5)  # purchase: 20-day half-life
    assert ("u", "future") not in w and ("u", "now") not in w  # only events before T


def test_an_event_decayed_to_nothing_still_marks_the_item_as_seen():
    con = events_connection([("u", "ancient", "view", datetime(1990, 1, 1, tzinfo=UTC))])
    w = weights(con, DecayConfig(kernel="exponential", half_life_days=0.01))
    assert w == {("u", "ancient"): 0.0}
