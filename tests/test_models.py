"""iALS and item-item on a planted structure: two user groups with disjoint tastes.

Users 0-9 like items 0-5, users 10-19 like items 6-11; each user has seen a random
half of their group's items. A model that learned the structure recommends the unseen
items of the user's own group, never the other group's.
"""

import numpy as np
import pytest
import torch

from decayrec.config import DecayrecConfig, model_section
from decayrec.lake.matrix import InteractionMatrix
from decayrec.models import EASE, IALS, REGISTRY, AlignedScorer, Input, ItemKNN, Model, make_model
from decayrec.scoring.recommend import recommend

N_USERS, N_ITEMS, GROUP_ITEMS = 20, 12, 6


def matrix_from_dense(x: np.ndarray) -> InteractionMatrix:
    rows, cols = np.nonzero(x)
    n_users, n_items = x.shape
    return InteractionMatrix(
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        weights=x[rows, cols].astype(np.float64),
        popularity=x.sum(axis=0).astype(np.float64),
    )


def group_of_item(i: int) -> int:
    return i // GROUP_ITEMS


def planted(seed: int = 0) -> np.ndarray:
    """Decayed-looking weights in (0.2, 1] on 3 of the 6 items of each user's group."""
    rng = np.random.default_rng(seed)
    x = np.zeros((N_USERS, N_ITEMS))
    for u in range(N_USERS):
        group = u // 10
        items = rng.choice(GROUP_ITEMS, size=3, replace=False) + group * GROUP_ITEMS
        x[u, items] = rng.uniform(0.2, 1.0, size=3)
    return x


MODELS = {
    "ials": lambda: IALS(factors=2, alpha=10.0, reg=0.1, iterations=10, seed=0),
    "itemknn-cosine": lambda: ItemKNN("cosine", neighbours=5),
    "itemknn-jaccard": lambda: ItemKNN("jaccard", neighbours=5),
    "itemknn-lift": lambda: ItemKNN("lift", neighbours=5),
    "ease": lambda: EASE(l2=1.0),
}


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"ease"}))
def test_model_recommends_its_own_groups_unseen_items(name):
    x = planted()
    matrix = matrix_from_dense(x)
    model = MODELS[name]().fit(matrix)
    assert isinstance(model, Model)
    lists = recommend(model, matrix, k=3)
    ranked = lists.as_matrix(N_USERS, 3)
    for u in range(N_USERS):
        assert set(ranked[u]) == set(
            np.nonzero((np.arange(N_ITEMS) // GROUP_ITEMS == u // 10) & (x[u] == 0))[0]
        ), (name, u, ranked[u])
    assert lists.from_model.all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip_gives_identical_scores(name, tmp_path):
    x = planted()
    model = MODELS[name]().fit(matrix_from_dense(x))
    model.save(tmp_path / "m.pt")
    loaded = type(model).load(tmp_path / "m.pt")
    batch = torch.tensor(x, dtype=torch.float32)
    assert torch.equal(loaded.score(batch), model.score(batch))
    assert list(loaded.item_ids) == list(model.item_ids)


def test_ials_fold_in_serves_a_new_user_without_touching_item_factors():
    model = IALS(factors=2, alpha=10.0, reg=0.1, iterations=10, seed=0)
    model.fit(matrix_from_dense(planted()))
    items_before = model.item_factors.clone()
    new_user = torch.zeros(1, N_ITEMS)
    new_user[0, [7, 9]] = 1.0  # a newcomer who touched two items of group 2
    scores = model.score(new_user)[0]
    assert torch.equal(model.item_factors, items_before)
    unseen = [i for i in range(N_ITEMS) if i not in (7, 9)]
    top4 = sorted(unseen, key=lambda i: -float(scores[i]))[:4]
    assert set(top4) == {6, 8, 10, 11}
    # the fold-in of a training user reproduces (nearly) its trained factors
    x = torch.tensor(planted(), dtype=torch.float32)
    folded = model.fold_in(x)
    assert torch.allclose(
        folded @ model.item_factors.T, model.user_factors @ model.item_factors.T, atol=0.05
    )


def test_ials_is_deterministic_for_a_seed():
    matrix = matrix_from_dense(planted())
    a = IALS(factors=2, seed=3).fit(matrix)
    b = IALS(factors=2, seed=3).fit(matrix)
    assert torch.equal(a.item_factors, b.item_factors)


def test_itemknn_explains_with_the_users_own_items():
    x = np.zeros((6, 5))
    # items 0 and 1 always together, item 2 with 3; item 4 co-occurs with 0 once
    x[0, [0, 1]] = 1
    x[1, [0, 1]] = 1
    x[2, [0, 1, 4]] = 1
    x[3, [2, 3]] = 1
    x[4, [2, 3]] = 1
    x[5, [3]] = 1
    model = ItemKNN("cosine", neighbours=4).fit(matrix_from_dense(x))
    user = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])  # saw items 0 and 2
    why = model.explain(user.to_sparse_csr(), torch.tensor([[1, 3, -1]]), top=10)
    assert why.items[0, 0].tolist()[:2] == [0, -1]  # item 1: because of item 0 alone
    assert why.items[0, 1].tolist()[:2] == [2, -1]  # item 3: because of item 2 alone
    assert why.items[0, 2].tolist() == [-1] * 10  # no item: no reason
    # the contributions add up to the score
    assert float(why.weights[0, 0].sum()) == pytest.approx(float(model.score(user)[0, 1]), rel=1e-5)


def test_neighbours_are_capped_per_item():
    x = planted()
    model = ItemKNN("cosine", neighbours=2).fit(matrix_from_dense(x))
    per_target = torch.bincount(model.S.indices()[1], minlength=N_ITEMS)
    assert int(per_target.max()) <= 2


def test_aligned_scorer_maps_items_by_id():
    x = planted()
    model = IALS(factors=2, seed=0).fit(matrix_from_dense(x))
    # today's catalogue: the same items reversed, plus one new item the model never saw
    today_ids = np.array(["new", *[f"i{i}" for i in reversed(range(N_ITEMS))]], dtype=object)
    aligned = AlignedScorer(model, today_ids)
    x_today = np.concatenate([np.zeros((N_USERS, 1)), x[:, ::-1]], axis=1)
    got = aligned.score(torch.tensor(x_today, dtype=torch.float32))
    want = model.score(torch.tensor(x, dtype=torch.float32))
    assert torch.allclose(got[:, 1:], want.flip(1))
    assert torch.all(got[:, 0] == 0)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_make_model_dispatches_on_the_config(name):
    model, device = make_model(DecayrecConfig(model=model_section({"name": name})))
    assert isinstance(model, REGISTRY[name].model) and isinstance(model, Model)
    assert model.name == name and device.type in ("cpu", "cuda")


def test_model_name_is_validated():
    with pytest.raises(ValueError):
        DecayrecConfig.model_validate({"model": {"name": "svd"}})


def test_ials_sparse_and_dense_entry_products_agree():
    """The sampled sparse product (large blocks) and the dense GEMM + gather (small
    blocks) compute the same factors."""
    matrix = matrix_from_dense(planted())
    sparse = IALS(factors=2, alpha=10.0, reg=0.1, iterations=5, seed=0, dense_block=0)
    dense = IALS(factors=2, alpha=10.0, reg=0.1, iterations=5, seed=0, dense_block=10**9)
    sparse.fit(matrix)
    dense.fit(matrix)
    assert torch.allclose(sparse.item_factors, dense.item_factors, atol=1e-5)
    assert torch.allclose(sparse.user_factors, dense.user_factors, atol=1e-5)


def random_matrix(n_users: int = 120, n_items: int = 40, seed: int = 4) -> np.ndarray:
    """Sparse random weights, some decayed to exactly zero (seen, but weightless)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n_users, n_items))
    for u in range(n_users):
        items = rng.choice(n_items, rng.integers(1, 12), replace=False)
        x[u, items] = rng.uniform(0.05, 2.0, len(items))
        x[u, items[0]] = 0.0 if len(items) > 2 else x[u, items[0]]
    return x


class DenseOnly:
    """The same model, seen by `recommend` as one that takes dense user rows."""

    input = Input.DENSE

    def __init__(self, model) -> None:
        self.model = model
        self.name = model.name

    def score(self, x: torch.Tensor) -> torch.Tensor:
        assert x.layout == torch.strided
        return self.model.score(x)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_csr_and_dense_user_rows_give_the_same_scores_and_lists(name):
    x = random_matrix()
    matrix = matrix_from_dense(x)
    # a zero weight is still an entry of the matrix (the user saw the item)
    zero_rows, zero_cols = np.nonzero((x == 0) & (np.arange(x.shape[1]) < 3))
    matrix.rows = np.concatenate([matrix.rows, zero_rows[:5]])
    matrix.cols = np.concatenate([matrix.cols, zero_cols[:5]])
    matrix.weights = np.concatenate([matrix.weights, np.zeros(5)])
    order = np.lexsort((matrix.cols, matrix.rows))
    matrix.rows, matrix.cols, matrix.weights = (
        matrix.rows[order],
        matrix.cols[order],
        matrix.weights[order],
    )
    model = MODELS[name]().fit(matrix)
    assert model.input is Input.CSR
    dense = torch.tensor(x, dtype=torch.float32)
    from_csr = model.score(dense.to_sparse_csr())
    if from_csr.layout == torch.sparse_csr:
        from_csr = from_csr.to_dense()
    assert torch.allclose(from_csr, model.score(dense), atol=1e-5)
    sparse_lists = recommend(model, matrix, k=5, user_batch=16)
    dense_lists = recommend(DenseOnly(model), matrix, k=5, user_batch=16)
    assert np.array_equal(sparse_lists.item_idx, dense_lists.item_idx)
    assert np.array_equal(sparse_lists.from_model, dense_lists.from_model)
    assert sparse_lists.from_model.mean() > 0.5
    np.testing.assert_allclose(sparse_lists.score, dense_lists.score, rtol=1e-5)
    # the zero-weight entries are never recommended
    ranked = sparse_lists.as_matrix(x.shape[0], 5)
    for u, i in zip(zero_rows[:5], zero_cols[:5], strict=True):
        assert i not in ranked[u]


@pytest.mark.parametrize("similarity", ["cosine", "jaccard", "lift"])
@pytest.mark.parametrize("cooccurrence", ["decayed", "counts"])
def test_itemknn_similarity_is_the_formula_whatever_the_column_blocks(similarity, cooccurrence):
    x = random_matrix(n_users=200, n_items=30)
    matrix = matrix_from_dense(x)
    if cooccurrence == "decayed":
        a = x / x[x > 0].mean()
    else:  # who touched what: 1 for every entry of the matrix
        a = np.zeros_like(x)
        a[matrix.rows, matrix.cols] = 1.0
    c = a.T @ a
    d = np.diag(c)
    if similarity == "cosine":
        s = c / np.sqrt(np.outer(d, d))
    elif similarity == "jaccard":
        s = c / (d[:, None] + d[None, :] - c)
    else:
        s = c / np.outer(d, d)
    np.fill_diagonal(s, 0.0)
    whole = ItemKNN(similarity, neighbours=29, cooccurrence=cooccurrence).fit(matrix)
    # memory for about one column at a time: 30 blocks
    blocks = ItemKNN(similarity, neighbours=29, cooccurrence=cooccurrence, memory_mb=1e-5)
    blocks.fit(matrix)
    np.testing.assert_allclose(whole.S.to_dense().numpy(), s, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(blocks.S.to_dense().numpy(), s, rtol=1e-4, atol=1e-6)


def test_itemknn_keeps_the_most_similar_neighbours_of_each_item():
    x = random_matrix(n_users=200, n_items=30)
    full = ItemKNN("jaccard", neighbours=29).fit(matrix_from_dense(x)).S.to_dense()
    kept = ItemKNN("jaccard", neighbours=4).fit(matrix_from_dense(x)).S.to_dense()
    for j in range(30):
        column = full[:, j]
        assert int((kept[:, j] > 0).sum()) == min(4, int((column > 0).sum()))
        threshold = torch.sort(column, descending=True).values[3]
        assert torch.all(kept[:, j][kept[:, j] > 0] >= threshold)


def test_itemknn_scoring_does_not_grow_memory_batch_after_batch():
    """torch's CPU CSR x CSR product leaked ~37 MB a batch (22 GB at 10^8 events, killed
    by the OS); here it leaked ~5.6 MB a batch: 450 MB over the 80 measured batches. After
    a warm-up (allocator arenas, thread pool), 80 more batches may add at most 100 MB."""
    rng = np.random.default_rng(0)
    n_users, n_items = 2000, 3000
    x = np.zeros((n_users, n_items), dtype=np.float32)
    for u in range(n_users):
        x[u, rng.choice(n_items, 20, replace=False)] = 1.0
    model = ItemKNN("jaccard", 50).fit(matrix_from_dense(x))
    batch = torch.from_numpy(x[:1024]).to_sparse_csr()
    first = model.score(batch)

    def resident_mb() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096 / 2**20

    for _ in range(40):
        model.score(batch)
    before = resident_mb()
    for _ in range(80):
        again = model.score(batch)
    assert resident_mb() - before < 100
    assert torch.equal(again.to_dense(), first.to_dense())


def test_item_item_product_split_over_threads_is_the_whole_product():
    import scipy.sparse

    from decayrec.models.itemknn import _parallel_product

    left = scipy.sparse.random(1000, 300, density=0.02, format="csr", random_state=1)
    right = scipy.sparse.random(300, 300, density=0.05, format="csr", random_state=2)
    whole = (left @ right).toarray()
    for threads in (1, 2, 3):
        np.testing.assert_allclose(_parallel_product(left, right, threads).toarray(), whole)


def reversed_catalogue(matrix: InteractionMatrix) -> InteractionMatrix:
    """The same interactions in a catalogue listing the items in reverse order."""
    n = matrix.shape[1]
    order = np.lexsort((n - 1 - matrix.cols, matrix.rows))
    return InteractionMatrix(
        user_ids=matrix.user_ids,
        item_ids=matrix.item_ids[::-1].copy(),
        rows=matrix.rows[order],
        cols=(n - 1 - matrix.cols)[order],
        weights=matrix.weights[order],
        popularity=matrix.popularity[::-1].copy(),
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_wrappers_take_the_csr_rows_of_the_model_they_wrap(name):
    """The champion re-score (AlignedScorer) and the cold-start blend (ColdStartBlend,
    here with no item to blend) declare the input of the model they wrap: CSR rows reach
    the model as CSR (its fast path), and the lists are the bare model's, bit for bit,
    also on a catalogue in another order."""
    from decayrec.content import ColdStartBlend

    matrix = matrix_from_dense(random_matrix())
    model = MODELS[name]().fit(matrix)
    layouts = []
    score = model.score
    model.score = lambda x: layouts.append(x.layout) or score(x)
    bare = recommend(model, matrix, k=5, user_batch=16)
    n = matrix.shape[1]
    today = reversed_catalogue(matrix)
    wrapped = {
        "aligned": (AlignedScorer(model, matrix.item_ids), matrix),
        "aligned, reversed": (AlignedScorer(model, today.item_ids), today),
        "blend": (ColdStartBlend(model, np.zeros((n, 1)), np.zeros(n), 0, 0.0), matrix),
        "blend of aligned, reversed": (
            ColdStartBlend(
                AlignedScorer(model, today.item_ids), np.zeros((n, 1)), np.zeros(n), 0, 0.0
            ),
            today,
        ),
    }
    for what, (scorer, scored) in wrapped.items():
        assert scorer.input is Input.CSR, what
        layouts.clear()
        lists = recommend(scorer, scored, k=5, user_batch=16)
        assert layouts and set(layouts) == {torch.sparse_csr}, what
        assert list(scored.item_ids[lists.item_idx]) == list(matrix.item_ids[bare.item_idx]), what
        for field in ("user_idx", "rank", "from_model", "score"):
            np.testing.assert_array_equal(getattr(lists, field), getattr(bare, field), what)


def test_the_registry_pairs_each_model_with_its_config_section():
    from decayrec.config import MODEL_SECTIONS

    assert set(REGISTRY) == set(MODEL_SECTIONS) == {"ease", "ials", "itemknn", "sasrec"}
    for name, entry in REGISTRY.items():
        assert entry.model.name == entry.section().name == name
        assert issubclass(entry.model, Model) and entry.model.input in Input
    assert REGISTRY["sasrec"].model.input is Input.SEQUENCES


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_setting_of_a_section_reaches_its_model(name):
    """from_config passes settings by name: a model's own settings (not the common ones
    in ModelSettings, nor the snapshot's sequence length) are all constructor arguments."""
    import inspect

    from decayrec.config import ModelSettings

    entry = REGISTRY[name]
    own = set(entry.section.model_fields) - set(ModelSettings.model_fields) - {"seq_history"}
    arguments = inspect.signature(entry.model).parameters
    taken = {entry.model.settings.get(argument, argument) for argument in arguments}
    assert own <= taken
    changed = {"l2": 7.0, "neighbours": 7, "factors": 7}
    section = entry.section.model_validate({k: v for k, v in changed.items() if k in own})
    model, _ = make_model(DecayrecConfig(model=section))
    for key in own & set(changed):
        assert getattr(model, key) == changed[key]


def test_model_sections_keep_the_flat_shape_and_the_defaults():
    config = DecayrecConfig()
    assert config.model.name == "ease" and config.model.l2 == 400.0
    parsed = DecayrecConfig.model_validate({"model": {"name": "ease", "l2": 200}})
    assert parsed.model.l2 == 200.0 and parsed.model.max_items == config.model.max_items
    assert DecayrecConfig.model_validate({"model": {"l2": 200}}).model == parsed.model
    knn = DecayrecConfig.model_validate({"model": {"name": "itemknn"}}).model
    assert (knn.name, knn.similarity, knn.neighbours, knn.min_history) == (
        "itemknn",
        "jaccard",
        100,
        3,
    )
    assert DecayrecConfig.model_validate(config.model_dump(mode="json")) == config
    with pytest.raises(ValueError, match="factors"):  # another model's setting
        DecayrecConfig.model_validate({"model": {"name": "ease", "factors": 8}})
    # what registry records and tuning winners hold from before the sections: the
    # named model's own settings are kept, the others' left out, unknown ones refused
    flat = {"name": "itemknn", "l2": 100.0, "factors": 8, "neighbours": 20, "seed": 0}
    assert model_section(flat) == knn.model_copy(update={"neighbours": 20})
    with pytest.raises(ValueError, match="neighbors"):
        model_section({"name": "itemknn", "neighbors": 20})
