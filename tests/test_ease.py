"""EASE's closed form on 3x3 examples, its rescaling, persistence and size guard."""

import numpy as np
import pytest
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.models.ease import EASE, CatalogueTooLarge


def matrix_from_dense(x: np.ndarray) -> InteractionMatrix:
    rows, cols = np.nonzero(x)  # row-major: rows come out sorted
    n_users, n_items = x.shape
    return InteractionMatrix(
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        weights=x[rows, cols].astype(np.float64),
        popularity=x.sum(axis=0).astype(np.float64),
    )


def ease_by_hand(x: np.ndarray, l2: float) -> np.ndarray:
    g = x.T @ x + l2 * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_all_ones_triangle_has_quarter_weights():
    # X^T X = I + J, G = 2I + J (lambda = 1), P = 0.5 I - 0.1 J:
    # diag 0.4, off-diag -0.1, so B_ij = 0.1 / 0.4 = 0.25
    x = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=float)
    model = EASE(l2=1.0).fit(matrix_from_dense(x))
    expected = np.full((3, 3), 0.25)
    np.fill_diagonal(expected, 0.0)
    assert model.scale == 1.0
    np.testing.assert_allclose(model.B.numpy(), expected, rtol=1e-6, atol=1e-7)
    # user 0 (items 0, 1) scores item 2 at 0.25 + 0.25
    scores = model.score(torch.tensor([[1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(scores.numpy(), [[0.25, 0.25, 0.5]], rtol=1e-6)


def test_uniform_weights_are_rescaled_to_mean_one():
    # the same pattern at weight 3: mean non-zero weight 3, so the rescaled X is all ones
    x = 3.0 * np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=float)
    model = EASE(l2=1.0).fit(matrix_from_dense(x))
    assert model.scale == pytest.approx(3.0, rel=1e-12)
    expected = np.full((3, 3), 0.25)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.B.numpy(), expected, rtol=1e-6, atol=1e-7)
    # scores take unscaled rows: x_u / 3 @ B
    scores = model.score(torch.tensor([[3.0, 3.0, 0.0]]))
    np.testing.assert_allclose(scores.numpy(), [[0.25, 0.25, 0.5]], rtol=1e-6)


def test_general_weights_match_closed_form_on_rescaled_matrix():
    x = np.array([[1.0, 2.0, 0.0], [0.0, 0.5, 3.0], [2.0, 0.0, 1.5], [0.0, 0.0, 1.0]])
    l2 = 0.7
    scale = x[x > 0].mean()  # (1 + 2 + 0.5 + 3 + 2 + 1.5 + 1) / 7 = 11 / 7
    assert scale == pytest.approx(11 / 7, rel=1e-12)
    model = EASE(l2=l2).fit(matrix_from_dense(x))
    assert model.scale == pytest.approx(11 / 7, rel=1e-12)
    expected = ease_by_hand(x / scale, l2)
    np.testing.assert_allclose(model.B.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.diag(model.B.numpy()) == 0.0)
    # it is not the unscaled solution (the rescaling matters for this lambda)
    assert not np.allclose(model.B.numpy(), ease_by_hand(x, l2), rtol=1e-3, atol=1e-4)
    row = torch.tensor(x[:1], dtype=torch.float32)
    np.testing.assert_allclose(
        model.score(row).numpy(), (x[:1] / scale) @ expected, rtol=1e-5, atol=1e-6
    )


def test_user_batches_do_not_change_the_result():
    x = np.array([[1.0, 2.0, 0.0], [0.0, 0.5, 3.0], [2.0, 0.0, 1.5], [0.0, 0.0, 1.0]])
    one = EASE(l2=0.7).fit(matrix_from_dense(x))
    batched = EASE(l2=0.7, user_batch=1).fit(matrix_from_dense(x))
    np.testing.assert_allclose(batched.B.numpy(), one.B.numpy(), rtol=1e-6, atol=1e-7)


def test_decayed_to_zero_entries_do_not_count_in_the_scale():
    # an explicit 0.0 entry (a fully decayed pair) is in the matrix but not in the mean
    m = matrix_from_dense(np.array([[2.0, 4.0, 0.0], [0.0, 0.0, 6.0]]))
    m.rows = np.append(m.rows, 1)
    m.cols = np.append(m.cols, 1)
    m.weights = np.append(m.weights, 0.0)
    order = np.lexsort((m.cols, m.rows))
    m.rows, m.cols, m.weights = m.rows[order], m.cols[order], m.weights[order]
    model = EASE(l2=1.0).fit(m)
    assert model.scale == pytest.approx(4.0, rel=1e-12)


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    x = np.array([[1.0, 2.0, 0.0], [0.0, 0.5, 3.0], [2.0, 0.0, 1.5], [0.0, 0.0, 1.0]])
    model = EASE(l2=0.7).fit(matrix_from_dense(x))
    path = tmp_path / "ease.pt"
    model.save(path)
    loaded = EASE.load(path)
    assert loaded.l2 == 0.7
    assert loaded.scale == model.scale
    assert list(loaded.item_ids) == ["i0", "i1", "i2"]
    assert torch.equal(loaded.B, model.B)
    batch = torch.tensor(x, dtype=torch.float32)
    assert torch.equal(loaded.score(batch), model.score(batch))


def test_b_is_laid_out_by_rows_after_fit_and_load(tmp_path):
    """Scoring adds the rows of B of a user's items: B is row-major (contiguous) from the
    fit and from a file, also one whose B was saved by columns (as LAPACK returns it)."""
    rng = np.random.default_rng(0)
    x = (rng.random((40, 12)) < 0.3) * rng.random((40, 12))
    model = EASE(l2=2.0).fit(matrix_from_dense(x))
    assert model.B.is_contiguous()
    np.testing.assert_allclose(model.B.numpy(), ease_by_hand(x / x[x > 0].mean(), 2.0), atol=1e-5)
    by_columns = model.B.T.contiguous().T  # the same matrix, stored column-major
    model.B = by_columns
    model.save(tmp_path / "ease.pt")
    loaded = EASE.load(tmp_path / "ease.pt")
    assert loaded.B.is_contiguous() and torch.equal(loaded.B, by_columns)


def test_catalogue_larger_than_max_items_is_refused():
    x = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=float)
    with pytest.raises(CatalogueTooLarge, match="3 items"):
        EASE(l2=1.0, max_items=2).fit(matrix_from_dense(x))
    # exactly max_items is fine
    assert EASE(l2=1.0, max_items=3).fit(matrix_from_dense(x)).B.shape == (3, 3)


def test_score_before_fit_raises():
    with pytest.raises(RuntimeError):
        EASE().score(torch.zeros(1, 3))


@pytest.mark.parametrize("scatter_cost, pair_batch", [(10**9, 1 << 24), (0, 1 << 24), (0, 100)])
@pytest.mark.parametrize("block", [None, (0, 50), (7, 31), (49, 50)])
def test_gram_matrix_is_x_transpose_x_either_way(monkeypatch, scatter_cost, pair_batch, block):
    """Dense user batches, or scattered (item, item) pairs in batches of any size; the
    whole matrix or one block of its rows."""
    import decayrec.models.cooccurrence as cooccurrence

    rng = np.random.default_rng(0)
    n_users, n_items = 300, 50
    dense = np.zeros((n_users, n_items))
    for u in range(n_users):
        items = rng.choice(n_items, rng.integers(1, 30), replace=False)
        dense[u, items] = rng.uniform(0.1, 1.0, len(items))
    rows, cols = np.nonzero(dense)
    matrix = InteractionMatrix(
        user_ids=np.arange(n_users).astype(str).astype(object),
        item_ids=np.arange(n_items).astype(str).astype(object),
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        weights=dense[rows, cols],
        popularity=dense.sum(0),
    )
    monkeypatch.setattr(cooccurrence, "SCATTER_COST", scatter_cost)
    monkeypatch.setattr(cooccurrence, "PAIR_BATCH", pair_batch)
    gram = cooccurrence.gram_matrix(matrix, matrix.weights, 64, torch.device("cpu"), block)
    start, stop = block or (0, n_items)
    want = dense[:, start:stop].T @ dense
    np.testing.assert_allclose(gram.numpy(), want, rtol=1e-5, atol=1e-4)


def test_sparse_and_dense_scoring_agree(monkeypatch):
    import decayrec.models.ease as ease_module

    rng = np.random.default_rng(1)
    dense = np.zeros((60, 40))
    for u in range(60):
        dense[u, rng.choice(40, 3, replace=False)] = rng.uniform(0.1, 1.0, 3)
    rows, cols = np.nonzero(dense)
    matrix = InteractionMatrix(
        user_ids=np.arange(60).astype(str).astype(object),
        item_ids=np.arange(40).astype(str).astype(object),
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        weights=dense[rows, cols],
        popularity=dense.sum(0),
    )
    model = EASE(l2=1.0).fit(matrix)
    x = torch.tensor(dense, dtype=torch.float32)
    as_dense = model.score(x)
    monkeypatch.setattr(ease_module, "SPARSE_ROWS", 1.0)
    as_csr = model.score(x.to_sparse_csr())
    monkeypatch.setattr(ease_module, "SPARSE_ROWS", 0.0)
    densified = model.score(x.to_sparse_csr())
    assert torch.allclose(as_csr, as_dense, atol=1e-6)
    assert torch.allclose(densified, as_dense, atol=1e-6)
    assert not torch.equal(as_dense, torch.zeros_like(as_dense))
