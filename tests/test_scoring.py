"""recommend(): masking of seen items, model rows, popularity top-up and fallback."""

import logging

import numpy as np
import pytest
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models import EASE, Input
from decayrec.scoring.recommend import PROGRESS_USERS, recommend

# Item popularity (set directly), most popular first: i1 (6), i3 (5), i5 (4), i2 (3), i4 (2), i0 (1)
POPULARITY = np.array([1.0, 6.0, 3.0, 5.0, 2.0, 4.0])

# (user, item, weight) entries, rows sorted; u0's item 2 has decayed to exactly 0.0
ENTRIES = [
    (0, 0, 1.0),
    (0, 2, 0.0),
    (0, 4, 1.0),
    (1, 1, 1.0),
    (2, 0, 1.0),
    (2, 1, 1.0),
    (2, 2, 1.0),
    (2, 3, 1.0),
    (3, 3, 1.0),
    (3, 5, 1.0),
]

# A fixed score per (user, item), as if from a model (seen items deliberately score high)
SCORES = torch.tensor(
    [
        [9.0, 1.0, 8.0, 0.5, 7.0, -1.0],  # u0: unseen i1 (1.0), i3 (0.5), i5 (-1)
        [1.0, 0.0, 2.0, 3.0, 4.0, 5.0],  # u1: one item only -> popularity fallback
        [0.0, 0.0, 0.0, 0.0, 0.1, 0.3],  # u2: only i4, i5 unseen
        [0.2, -0.5, 0.0, 0.0, 0.0, 0.0],  # u3: one positive unseen item (i0)
    ]
)


class FixedScorer:
    """Returns SCORES for a batch of all users (checks it got the right rows, dense)."""

    name = "fixed"
    input = Input.DENSE

    def __init__(self, scores: torch.Tensor, expected_x: np.ndarray | None = None):
        self.scores = scores
        self.expected_x = expected_x
        self.calls = 0

    def score(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert x.shape == self.scores.shape
        if self.expected_x is not None:
            np.testing.assert_array_equal(x.numpy(), self.expected_x)
        return self.scores.clone()


def make_matrix(entries=ENTRIES, popularity=POPULARITY, n_users=4) -> InteractionMatrix:
    rows, cols, weights = (np.array(v) for v in zip(*entries, strict=True))
    return InteractionMatrix(
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(len(popularity))], dtype=object),
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        weights=weights.astype(np.float64),
        popularity=np.asarray(popularity, dtype=np.float64),
    )


def dense(matrix: InteractionMatrix) -> np.ndarray:
    out = np.zeros(matrix.shape, dtype=np.float32)
    out[matrix.rows, matrix.cols] = matrix.weights
    return out


def lists_by_user(lists) -> dict[int, list[tuple[int, float, bool]]]:
    """user -> [(item, score, from_model)] in rank order."""
    out: dict[int, list[tuple[int, float, bool]]] = {}
    order = np.lexsort((lists.rank, lists.user_idx))
    for j in order:
        out.setdefault(int(lists.user_idx[j]), []).append(
            (int(lists.item_idx[j]), float(lists.score[j]), bool(lists.from_model[j]))
        )
    return out


@pytest.fixture
def fixed_lists():
    matrix = make_matrix()
    scorer = FixedScorer(SCORES, expected_x=dense(matrix))
    lists = recommend(scorer, matrix, k=3, min_history=2)
    assert scorer.calls == 1
    return matrix, lists


def test_hand_checked_lists_for_each_user(fixed_lists):
    _, lists = fixed_lists
    got = lists_by_user(lists)
    assert got == {
        # model's positive unseen items first, topped up by popularity (i5 is the only one left)
        0: [(1, 1.0, True), (3, 0.5, True), (5, pytest.approx(4 / 6), False)],
        # fewer than min_history items: popularity order without the seen i1
        1: [(3, pytest.approx(5 / 6), False), (5, pytest.approx(4 / 6), False), (2, 0.5, False)],
        # only two unseen items: a shorter list
        2: [(5, pytest.approx(0.3), True), (4, pytest.approx(0.1), True)],
        # one positive model item, then the most popular unseen items (score 0 is not positive)
        3: [(0, pytest.approx(0.2), True), (1, 1.0, False), (2, 0.5, False)],
    }


def test_ranks_are_one_based_and_consecutive(fixed_lists):
    _, lists = fixed_lists
    assert list(lists.rank) == [1, 2, 3, 1, 2, 3, 1, 2, 1, 2, 3]
    assert list(lists.user_idx) == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3]


def test_seen_items_never_recommended_even_at_weight_zero(fixed_lists):
    matrix, lists = fixed_lists
    seen = set(zip(matrix.rows.tolist(), matrix.cols.tolist(), strict=True))
    for u, i in zip(lists.user_idx.tolist(), lists.item_idx.tolist(), strict=True):
        assert (u, i) not in seen
    # u0's item 2 has weight 0.0 and the model's second-highest score, yet is masked
    assert 2 not in lists.item_idx[lists.user_idx == 0]


def test_to_arrow_sources_and_ids(fixed_lists):
    matrix, lists = fixed_lists
    table = lists.to_arrow(matrix).to_pylist()
    by_user = {}
    for row in table:
        by_user.setdefault(row["user_id"], []).append((row["rank"], row["item_id"], row["source"]))
    assert by_user["u1"] == [(1, "i3", "fallback"), (2, "i5", "fallback"), (3, "i2", "fallback")]
    assert by_user["u0"] == [(1, "i1", "model"), (2, "i3", "model"), (3, "i5", "fallback")]
    assert by_user["u2"] == [(1, "i5", "model"), (2, "i4", "model")]


def test_as_matrix_pads_short_lists_with_minus_one(fixed_lists):
    _, lists = fixed_lists
    np.testing.assert_array_equal(
        lists.as_matrix(4, 3),
        [[1, 3, 5], [3, 5, 2], [5, 4, -1], [0, 1, 2]],
    )


def test_model_none_gives_popularity_order():
    matrix = make_matrix()
    lists = recommend(None, matrix, k=4)
    got = lists_by_user(lists)
    assert [[i for i, _, _ in got[u]] for u in range(4)] == [
        [1, 3, 5],  # only 3 unseen
        [3, 5, 2, 4],
        [5, 4],
        [1, 2, 4, 0],
    ]
    assert not lists.from_model.any()
    assert got[3][0][1] == 1.0 and got[3][3][1] == pytest.approx(1 / 6)


def test_k_distinct_unseen_items_per_user_random():
    rng = np.random.default_rng(7)
    n_users, n_items, k = 30, 12, 5
    seen = rng.random((n_users, n_items)) < 0.4
    seen[0] = True  # nothing left
    seen[1] = False
    seen[1, :9] = True  # 3 left
    rows, cols = np.nonzero(seen)
    weights = rng.choice([0.0, 0.5, 2.0], size=len(rows))
    matrix = InteractionMatrix(
        user_ids=np.array([f"u{u:02d}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i:02d}" for i in range(n_items)], dtype=object),
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        weights=weights,
        popularity=rng.permutation(n_items).astype(float) + 1,
    )
    scores = torch.from_numpy(rng.normal(size=(n_users, n_items)).astype(np.float32))
    lists = recommend(FixedScorer(scores), matrix, k=k, min_history=3)
    for u in range(n_users):
        items = lists.item_idx[lists.user_idx == u]
        unseen = set(np.flatnonzero(~seen[u]).tolist())
        assert len(items) == min(k, len(unseen))
        assert len(set(items.tolist())) == len(items)
        assert set(items.tolist()) <= unseen
        # model rows come first and are the best positive-scored unseen items, in order
        fm = lists.from_model[lists.user_idx == u]
        n_model = int(fm.sum())
        assert not fm[n_model:].any()
        if seen[u].sum() >= 3:
            positive = sorted(
                (i for i in unseen if scores[u, i] > 0), key=lambda i: -float(scores[u, i])
            )
            assert items[:n_model].tolist() == positive[:k]
        else:
            assert n_model == 0
    assert 0 not in lists.user_idx


def test_real_ease_keeps_disjoint_tastes_apart():
    # items 0-3 are group A, 4-7 group B; each user has all of their group but one item.
    # B is twice as popular as A, so popularity alone would push B items to A users.
    entries = []
    groups = {}
    user = 0
    for group, items, copies in (("A", range(0, 4), 1), ("B", range(4, 8), 2)):
        for missing in items:
            for _ in range(copies):
                groups[user] = (group, missing)
                entries += [(user, i, 1.0) for i in items if i != missing]
                user += 1
    n_users = user
    rows, cols, weights = (np.array(v) for v in zip(*entries, strict=True))
    popularity = np.bincount(cols, weights=weights, minlength=8)
    assert popularity[4] > popularity[0]
    matrix = InteractionMatrix(
        user_ids=np.array([f"u{u:02d}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(8)], dtype=object),
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        weights=weights.astype(np.float64),
        popularity=popularity,
    )
    model = EASE(l2=1.0).fit(matrix)
    lists = recommend(model, matrix, k=3, min_history=2)
    got = lists_by_user(lists)
    for u, (group, missing) in groups.items():
        assert got[u][0][0] == missing and got[u][0][2] is True
        group_items = range(0, 4) if group == "A" else range(4, 8)
        for item, _, from_model in got[u]:
            if from_model:
                assert item in group_items
    # an A user's top-up comes from B's popular items: only the first row is the model's
    assert [fm for _, _, fm in got[0]] == [True, False, False]
    # batching by one user gives the same lists
    one_by_one = recommend(model, matrix, k=3, min_history=2, user_batch=1)
    np.testing.assert_array_equal(one_by_one.item_idx, lists.item_idx)
    np.testing.assert_array_equal(one_by_one.from_model, lists.from_model)


def test_users_subset_keeps_their_order_in_as_matrix():
    matrix = make_matrix()
    lists = recommend(None, matrix, k=2, users=np.array([3, 1]))
    assert list(lists.user_idx) == [3, 3, 1, 1]
    np.testing.assert_array_equal(lists.as_matrix(2, 2), [[1, 2], [3, 5]])


def test_a_small_memory_budget_scores_in_smaller_batches_with_the_same_lists(monkeypatch):
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 30
    seen = rng.random((n_users, n_items)) < 0.3
    rows, cols = np.nonzero(seen)
    matrix = InteractionMatrix(
        user_ids=np.array([f"u{u:02d}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i:02d}" for i in range(n_items)], dtype=object),
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        weights=rng.uniform(0.1, 1.0, size=len(rows)),
        popularity=rng.permutation(n_items).astype(float) + 1,
    )
    model = EASE(l2=1.0).fit(matrix)
    batches: list[int] = []
    original = model.score
    monkeypatch.setattr(model, "score", lambda x: batches.append(len(x)) or original(x))
    roomy = recommend(model, matrix, k=5)
    assert batches == [n_users]
    batches.clear()
    # 24 bytes per item and user: a budget of 7 users' worth
    tight = recommend(model, matrix, k=5, memory_mb=7 * 24 * n_items / 2**20)
    assert max(batches) == 7 and sum(batches) == n_users
    for field in ("user_idx", "rank", "item_idx", "from_model"):
        np.testing.assert_array_equal(getattr(tight, field), getattr(roomy, field))
    np.testing.assert_allclose(tight.score, roomy.score, rtol=1e-6)


def test_popularity_lists_are_the_most_popular_unseen_items_for_heavy_and_light_users():
    """The baseline ranks only the k + (longest history) most popular items: the lists
    must still be exactly the k most popular unseen items, whoever has seen what."""
    rng = np.random.default_rng(11)
    n_users, n_items, k = 40, 200, 5
    popularity = rng.permutation(n_items).astype(np.float64) + 1.0  # distinct
    by_popularity = np.argsort(-popularity)
    entries = []
    for u in range(n_users):
        if u == 0:  # a heavy user who saw the 150 most popular items
            seen = by_popularity[:150]
        elif u == 1:  # saw every item but three
            seen = by_popularity[3:]
        else:
            seen = rng.choice(n_items, rng.integers(1, 30), replace=False)
        entries += [(u, int(i), 1.0) for i in sorted(seen)]
    matrix = make_matrix(entries, popularity, n_users)
    lists = recommend(None, matrix, k=k, user_batch=7)
    got = lists_by_user(lists)
    seen_by = {u: {i for uu, i, _ in entries if uu == u} for u in range(n_users)}
    for u in range(n_users):
        want = [int(i) for i in by_popularity if i not in seen_by[u]][:k]
        assert [i for i, _, _ in got[u]] == want, u
    assert [i for i, _, _ in got[1]] == [int(i) for i in by_popularity[:3]]


def test_scoring_many_users_logs_its_progress(caplog):
    """A run scoring at least PROGRESS_USERS users logs about every tenth of them."""
    n_users = PROGRESS_USERS
    matrix = InteractionMatrix(
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_ids=np.array(["i0", "i1", "i2"], dtype=object),
        rows=np.arange(n_users, dtype=np.int64),
        cols=np.zeros(n_users, dtype=np.int64),
        weights=np.ones(n_users),
        popularity=np.array([3.0, 2.0, 1.0]),
    )
    caplog.set_level(logging.INFO, logger="decayrec.scoring.recommend")
    lists = recommend(None, matrix, k=1, user_batch=20_000)
    assert lists.item_idx.tolist() == [1] * n_users
    lines = [r.getMessage() for r in caplog.records if r.name == "decayrec.scoring.recommend"]
    done = [int(line.split()[2]) for line in lines]
    assert done == [20_000 * i for i in range(1, 11)]
    assert lines[0].startswith("scored users 20000 of 200000; ") and ", ETA " in lines[0]
    assert ", ETA" not in lines[-1]
