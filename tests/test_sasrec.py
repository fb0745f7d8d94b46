"""The time-aware sequential Transformer on planted sequences.

* order: each user walks their group's items in a cycle; the next item is the
  successor of the last one, and never an item of the other group;
* time: the same items in the same order are followed by one item when the user comes
  back a minute later and by another when they come back two years later; only a model
  that reads the time to the reference time can tell them apart.
"""

import logging
import re

import numpy as np
import pytest
import torch

from decayrec.config import DecayrecConfig, EaseConfig, SASRecConfig
from decayrec.content import ContentError
from decayrec.lake.matrix import EventSequences, InteractionMatrix
from decayrec.models import EASE, AlignedScorer, TimeSASRec, make_model
from decayrec.models.blend import Blend
from decayrec.models.device import last_events, user_rows
from decayrec.scoring.lists import fit_configured
from decayrec.scoring.recommend import recommend

GROUP, WALK = 8, 6
MINUTE, YEAR = 60.0, 365.25 * 86400.0
T0 = 1.6e9


def matrix_from_events(events: list[list[tuple[int, float]]], refs: list[float], n_items: int):
    """An InteractionMatrix (weights 1) with the users' event sequences."""
    rows, cols, items, times, ptr = [], [], [], [], [0]
    for u, seq in enumerate(events):
        for item in sorted({i for i, _ in seq}):
            rows.append(u)
            cols.append(item)
        items += [i for i, _ in seq]
        times += [t for _, t in seq]
        ptr.append(len(items))
    rows_a, cols_a = np.array(rows, np.int64), np.array(cols, np.int64)
    return InteractionMatrix(
        user_ids=np.array([f"u{u}" for u in range(len(events))], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        rows=rows_a,
        cols=cols_a,
        weights=np.ones(len(rows_a)),
        popularity=np.bincount(cols_a, minlength=n_items).astype(np.float64),
        sequences=EventSequences(
            ptr=np.array(ptr, np.int64),
            items=np.array(items, np.int64),
            times=np.array(times, np.float64),
            ref_times=np.array(refs, np.float64),
        ),
    )


def cyclic_walks(n_users: int = 48, seed: int = 0):
    """Users 0..n/2-1 walk items 0-7 in a cycle, the others items 8-15; each has WALK
    events an hour apart starting at a random item, and one hour later is recommended to."""
    rng = np.random.default_rng(seed)
    events, refs, expected = [], [], []
    for u in range(n_users):
        group = u % 2
        start = int(rng.integers(GROUP))
        walk = [group * GROUP + (start + s) % GROUP for s in range(WALK + 1)]
        times = [T0 + 3600.0 * s for s in range(WALK + 1)]
        events.append(list(zip(walk, times, strict=True)))
        refs.append(times[-1] + 3600.0)
        expected.append(group * GROUP + (start + WALK + 1) % GROUP)
    return matrix_from_events(events, refs, 2 * GROUP), expected


def small_model(**overrides) -> TimeSASRec:
    settings = dict(
        dim=32,
        layers=1,
        heads=2,
        max_len=8,
        dropout=0.0,
        epochs=40,
        patience=40,
        lr=5e-3,
        batch_size=8,
    )
    return TimeSASRec(**{**settings, **overrides})


def test_learns_the_order_of_each_groups_walk():
    matrix, expected = cyclic_walks()
    model = small_model().fit(matrix)
    lists = recommend(model, matrix, k=1, min_history=1)
    ranked = lists.as_matrix(matrix.shape[0], 1)
    assert lists.from_model.all()
    hits = np.mean([ranked[u, 0] == expected[u] for u in range(matrix.shape[0])])
    assert hits >= 0.9, hits
    # the other group's items get almost nothing
    scores = model.score_users(matrix, np.arange(matrix.shape[0]))
    other_group = torch.tensor([[i // GROUP != u % 2 for i in range(2 * GROUP)] for u in range(48)])
    best_other = scores.masked_fill(~other_group, 0).max(1).values
    assert (scores[torch.arange(48), torch.tensor(expected)] > 3 * best_other).all()


def returning_users(n_users: int = 64, seed: int = 1):
    """Every user sees items 0, 1, 2 a minute apart, in a random order of the three; half
    come back a minute later and take item 3, the other half two years later and take
    item 4; then item 5 a minute after that (held out for validation by the model)."""
    rng = np.random.default_rng(seed)
    events, refs = [], []
    for u in range(n_users):
        gap = MINUTE if u % 2 == 0 else 2 * YEAR
        first = [int(i) for i in rng.permutation(3)]
        times = [T0 + MINUTE * s for s in range(3)]
        nxt = 3 if u % 2 == 0 else 4
        back = times[-1] + gap
        events.append([*zip(first, times, strict=True), (nxt, back), (5, back + MINUTE)])
        refs.append(back + 2 * MINUTE)
    return matrix_from_events(events, refs, 6)


def test_learns_from_the_time_gap_what_comes_next():
    matrix = returning_users()
    model = small_model(max_len=4, time_bias=True).fit(matrix)
    items = np.array([[0, 1, 2], [0, 1, 2]])
    times = np.array([[T0, T0 + MINUTE, T0 + 2 * MINUTE]] * 2)
    refs = np.array([T0 + 3 * MINUTE, T0 + 2 * MINUTE + 2 * YEAR])
    scores = model.score_events(items, times, refs)
    soon, later = scores[0], scores[1]
    assert soon[3] > soon[4] and soon[3] > 0.6, soon
    assert later[4] > later[3] and later[4] > 0.6, later


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    matrix, _ = cyclic_walks()
    model = small_model(epochs=5).fit(matrix)
    model.save(tmp_path / "m.pt")
    loaded = TimeSASRec.load(tmp_path / "m.pt")
    users = np.arange(matrix.shape[0])
    assert torch.equal(loaded.score_users(matrix, users), model.score_users(matrix, users))
    assert list(loaded.item_ids) == list(model.item_ids)


def test_same_seed_same_model():
    matrix, _ = cyclic_walks()
    users = np.arange(matrix.shape[0])
    a = small_model(epochs=3).fit(matrix).score_users(matrix, users)
    b = small_model(epochs=3).fit(matrix).score_users(matrix, users)
    assert torch.equal(a, b)


class Killed(RuntimeError):
    pass


def test_a_killed_training_resumes_from_its_checkpoint_to_the_same_weights(tmp_path, caplog):
    matrix, _ = cyclic_walks()
    users = np.arange(matrix.shape[0])
    straight = small_model(epochs=4, dropout=0.2).fit(matrix).score_users(matrix, users)

    def kill_after_second(epoch: int, _score: float) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        small_model(
            epochs=4, dropout=0.2, checkpoint_dir=tmp_path, on_epoch_end=kill_after_second
        ).fit(matrix)
    assert (tmp_path / "sasrec.ckpt").exists()
    caplog.set_level(logging.INFO, logger="decayrec.models.sasrec")
    epochs_run: list[int] = []
    resumed = small_model(
        epochs=4,
        dropout=0.2,
        checkpoint_dir=tmp_path,
        on_epoch_end=lambda e, _s: epochs_run.append(e),
    ).fit(matrix)
    assert epochs_run == [3, 4]  # it went on from epoch 2, not from scratch
    # a progress line per epoch, counted from the resumed epoch, with an ETA until the last
    lines = [r.getMessage() for r in caplog.records if r.name == "decayrec.models.sasrec"]
    resumed_lines = [line for line in lines if line.startswith("sasrec epoch 3 of 4")]
    assert len(resumed_lines) == 1 and ", ETA at most " in resumed_lines[0]
    assert re.search(r"validation NDCG@10 [01]\.\d{4}", resumed_lines[0])
    assert "loss " in resumed_lines[0]
    assert lines[-1].startswith("sasrec epoch 4 of 4: loss ") and "ETA" not in lines[-1]
    assert torch.equal(resumed.score_users(matrix, users), straight)
    assert not (tmp_path / "sasrec.ckpt").exists()  # done: nothing left to resume


def test_a_checkpoint_of_other_data_is_not_resumed(tmp_path):
    matrix, _ = cyclic_walks(seed=0)
    other, _ = cyclic_walks(seed=5)

    def kill(epoch: int, _score: float) -> None:
        raise Killed

    with pytest.raises(Killed):
        small_model(epochs=3, checkpoint_dir=tmp_path, on_epoch_end=kill).fit(other)
    epochs_run: list[int] = []
    small_model(
        epochs=3, checkpoint_dir=tmp_path, on_epoch_end=lambda e, _s: epochs_run.append(e)
    ).fit(matrix)
    assert epochs_run == [1, 2, 3]


def test_sampled_softmax_learns_too():
    matrix, expected = cyclic_walks()
    model = small_model(full_softmax_items=4, negatives=6).fit(matrix)
    ranked = recommend(model, matrix, k=1, min_history=1).as_matrix(matrix.shape[0], 1)
    assert np.mean(ranked[:, 0] == np.array(expected)) >= 0.8


def test_aligned_scorer_rescores_on_a_reordered_catalogue():
    matrix, _ = cyclic_walks()
    model = small_model(epochs=10).fit(matrix)
    users = np.arange(matrix.shape[0])
    # today's catalogue lists the items in reverse order, plus one the model never saw
    n = matrix.shape[1]
    order = np.arange(n)[::-1].copy()
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    assert matrix.sequences is not None
    today = InteractionMatrix(
        user_ids=matrix.user_ids,
        item_ids=np.concatenate([matrix.item_ids[order], ["new"]]).astype(object),
        rows=matrix.rows,
        cols=position[matrix.cols],
        weights=matrix.weights,
        popularity=np.concatenate([matrix.popularity[order], [0.0]]),
        sequences=EventSequences(
            ptr=matrix.sequences.ptr,
            items=position[matrix.sequences.items],
            times=matrix.sequences.times,
            ref_times=matrix.sequences.ref_times,
        ),
    )
    aligned = AlignedScorer(model, today.item_ids).score_users(today, users)
    direct = model.score_users(matrix, users)
    assert torch.allclose(aligned[:, :n], direct[:, order])
    assert (aligned[:, n] == 0).all()


def test_without_sequences_it_says_what_is_missing():
    matrix, _ = cyclic_walks()
    matrix.sequences = None
    with pytest.raises(ValueError, match="event sequence"):
        small_model().fit(matrix)


def test_make_model_builds_it_from_the_config():
    config = DecayrecConfig(model=SASRecConfig(seq_dim=32, seq_heads=4, seq_len=20))
    model, device = make_model(config)
    assert isinstance(model, TimeSASRec)
    assert model.hyper["max_len"] == 20 and model.hyper["heads"] == 4


def test_every_training_event_is_a_target_every_epoch_in_fresh_contexts():
    # one user of 23 events, one of 3, one of 1 (never a window): windows of L + 1 = 5
    seqs = EventSequences(
        ptr=np.array([0, 23, 26, 27]),
        items=np.arange(27),
        times=np.arange(27.0),
        ref_times=np.zeros(3),
    )
    model = TimeSASRec(max_len=4)
    rng = torch.Generator().manual_seed(0)
    train_end = np.array([21, 26, 27])  # the first user's last two events held out
    contexts: set[tuple[int, ...]] = set()
    for _ in range(12):
        windows = model._windows(seqs, train_end, rng)
        assert windows.shape[1] == 5
        targets = windows[:, 1:][windows[:, :-1] >= 0]
        # every training event but each user's first is a target; held-out ones never
        assert set(targets.tolist()) == set(range(1, 21)) | {24, 25}
        # a window never crosses users
        user = np.searchsorted(seqs.ptr, np.where(windows >= 0, windows, 0), side="right")
        assert all(len(set(u[w >= 0])) == 1 for u, w in zip(user, windows, strict=True))
        contexts |= {tuple(w) for w in windows if 12 in w[1:]}
    assert len(contexts) >= 3  # event 12 is predicted from other windows in other epochs


def test_the_time_away_is_capped_at_the_gaps_training_saw():
    matrix = returning_users()
    model = small_model(max_len=4, epochs=2, away_quantile=1.0, time_bias=True).fit(matrix)
    # the largest gap between training events: two years (the users who came back late)
    assert model.hyper["away_cap"] == pytest.approx(2 * YEAR)
    items = np.array([[0, 1, 2]] * 2)
    times = np.array([[T0, T0 + MINUTE, T0 + 2 * MINUTE]] * 2)
    capped = model.score_events(items, times, np.array([T0 + 2 * MINUTE + 2 * YEAR] * 2))
    longer = model.score_events(items, times, np.array([T0 + 2 * MINUTE + 30 * YEAR] * 2))
    assert torch.equal(capped, longer)
    nearer = model.score_events(items, times, np.array([T0 + 2 * MINUTE + YEAR] * 2))
    assert not torch.equal(nearer, longer)


def test_without_the_time_bias_the_time_away_does_not_matter():
    matrix = returning_users()
    model = small_model(max_len=4, epochs=2, time_bias=False).fit(matrix)
    items = np.array([[0, 1, 2]] * 2)
    times = np.array([[T0, T0 + MINUTE, T0 + 2 * MINUTE]] * 2)
    scores = model.score_events(items, times, np.array([T0 + 3 * MINUTE, T0 + 2 * YEAR]))
    assert torch.allclose(scores[0], scores[1])


def test_final_epochs_train_on_the_held_out_events_too():
    matrix, _ = cyclic_walks()
    plain = small_model(epochs=3, patience=3).fit(matrix)
    final = small_model(epochs=3, patience=3, final_epochs=2).fit(matrix)
    assert len(final.history) == len(plain.history) + 2
    assert final.history[-1]["epoch"] == 5 and "ndcg@10" not in final.history[-1]
    users = np.arange(matrix.shape[0])
    assert not torch.equal(final.score_users(matrix, users), plain.score_users(matrix, users))


def test_windows_run_on_by_the_later_targets_never_past_the_training_end():
    seqs = EventSequences(
        ptr=np.array([0, 23, 26]), items=np.arange(26), times=np.arange(26.0), ref_times=np.zeros(2)
    )
    model = TimeSASRec(max_len=4, targets=3)
    train_end = np.array([21, 26])
    windows = model._windows(seqs, train_end, torch.Generator().manual_seed(0))
    assert windows.shape[1] == 4 + 3
    user = np.searchsorted(seqs.ptr, np.where(windows >= 0, windows, 0), side="right") - 1
    assert (windows[windows >= 0] < train_end[user[windows >= 0]]).all()
    # each window's inputs and next event are consecutive, as with one target
    one = TimeSASRec(max_len=4)._windows(seqs, train_end, torch.Generator().manual_seed(0))
    assert np.array_equal(windows[:, :5], one)


def skip_gram_walks(n_users: int = 40, seed: int = 2):
    """Histories of triples (x_g, noise, y_g): after x_g comes one of 30 noise items at
    random, then y_g. Every user ends on some x_g."""
    rng = np.random.default_rng(seed)
    events, refs, last = [], [], []
    for _ in range(n_users):
        groups = rng.integers(4, size=4)
        items = [i for g in groups for i in (g, 8 + int(rng.integers(30)), 4 + g)]
        g = int(rng.integers(4))
        items.append(g)
        times = [T0 + 60.0 * s for s in range(len(items))]
        events.append(list(zip(items, times, strict=True)))
        refs.append(times[-1] + 60.0)
        last.append(g)
    return matrix_from_events(events, refs, 38), last


def test_later_targets_teach_what_comes_after_the_next_event():
    matrix, last = skip_gram_walks()
    users = np.arange(matrix.shape[0])
    y = torch.tensor(last) + 4
    chances = {}
    for targets in (1, 2):
        model = small_model(targets=targets, epochs=30, patience=30, holdout=1).fit(matrix)
        chances[targets] = model.score_users(matrix, users)[users, y].mean().item()
    # y_g never comes right after x_g: only the second target teaches it
    assert chances[2] > 0.15 and chances[1] < 0.05, chances


def test_a_blend_is_built_from_the_item_item_models_own_defaults_and_the_decay():
    config = DecayrecConfig.model_validate(
        {
            "model": {"name": "sasrec", "seq_blend": "ease", "seq_blend_weight": 0.3},
            "decay": {"pair_half_life_days": 7.0},
        }
    )
    model, _ = make_model(config)
    assert model.blend.weight == 0.3
    assert model.blend.companion.name == "ease"
    assert model.blend.companion.l2 == EaseConfig().l2
    assert model.blend.companion.pair_half_life_days == 7.0
    assert make_model(DecayrecConfig(model=SASRecConfig(seq_blend="none")))[0].blend is None


def blended(weight: float, matrix) -> TimeSASRec:
    model = small_model(epochs=3)
    model.blend = Blend(EASE(l2=1.0), weight)
    return model.fit(matrix)


def test_the_blend_mixes_the_item_item_scores_in_and_survives_save_and_load(tmp_path):
    matrix, _ = cyclic_walks()
    users = np.arange(matrix.shape[0])
    model = blended(0.4, matrix)
    scores = model.score_users(matrix, users)
    model.save(tmp_path / "m.pt")
    assert torch.equal(TimeSASRec.load(tmp_path / "m.pt").score_users(matrix, users), scores)
    # each part scaled by the user's best: the blend's best is at most 1, and it is not
    # the sequence model's ranking alone
    assert float(scores.max()) <= 1.0 + 1e-6
    alone = model.score_events(*last_events(matrix.sequences, users, 8))
    assert not torch.equal(scores.argsort(1), alone.argsort(1))
    # all weight on the item-item model: its ranking of the positively scored items
    model.blend = Blend(model.blend.companion, 1.0)
    x, _, _ = user_rows(matrix, matrix.row_pointer(), users, matrix.row_weights, "cpu")
    ease = model.blend.companion.score(x)
    full = model.score_users(matrix, users)
    for u in users[:8]:
        positive = ease[u] > 0
        assert torch.equal(
            full[u][positive].argsort(descending=True), ease[u][positive].argsort(descending=True)
        )


def test_text_init_starts_the_item_embeddings_from_the_text_vectors():
    matrix, _ = cyclic_walks()
    n = matrix.shape[1]
    rng = np.random.default_rng(0)
    text = rng.normal(size=(n, 48)).astype(np.float32)
    text[3] = text[2]  # items 2 and 3: the same text
    text[5] = 0.0  # item 5: no text
    model = small_model(item_init="text", epochs=1, dim=8)
    model.net = model._new_network(n)
    random_row = model.net.items.weight[6].detach().clone()
    model.item_text = text
    model._init_items_from_text(n)
    rows = model.net.items.weight.detach()
    assert torch.equal(rows[3 + 1], rows[2 + 1])
    assert not torch.equal(rows[6 + 1], random_row)  # drawn from its text now
    # the random start's spread, and the texts' geometry (the top components kept)
    assert rows[1:].std().item() == pytest.approx(8**-0.5, rel=0.2)
    far = int(np.argmax(((text - text[2]) ** 2).sum(1)))
    near, away = (rows[3 + 1] - rows[2 + 1]).norm(), (rows[far + 1] - rows[2 + 1]).norm()
    assert near < away
    assert torch.equal(rows[0], torch.zeros(8))


def test_text_init_without_text_vectors_says_what_is_missing():
    matrix, _ = cyclic_walks()
    with pytest.raises(ValueError, match="seq_item_init = text needs the items' text vectors"):
        small_model(item_init="text", epochs=1).fit(matrix)


def test_auto_init_starts_from_the_catalogues_texts_when_there_is_one(tmp_path):
    matrix, _ = cyclic_walks()
    catalogue = tmp_path / "items.csv"
    titles = [f"i{i},{'Comedy' if i < GROUP else 'Horror'} film number {i}" for i in range(16)]
    catalogue.write_text("item_id,title\n" + "\n".join(titles) + "\n")
    section = SASRecConfig(seq_epochs=1, seq_dim=8, seq_heads=2, seq_len=8, seq_blend="none")
    without = DecayrecConfig(model=section, data_dir=tmp_path / "a")
    model = fit_configured(without, make_model(without)[0], matrix)
    assert model.item_text is None
    with_texts = DecayrecConfig.model_validate(
        {
            "model": dict(section),
            "content": {"catalogue": str(catalogue)},
            "data_dir": str(tmp_path),
        }
    )
    model = fit_configured(with_texts, make_model(with_texts)[0], matrix)
    assert model.item_text.shape == (16, 384)
    assert (np.abs(model.item_text).sum(1) > 0).all()
    strict = DecayrecConfig(model=section.model_copy(update={"seq_item_init": "text"}))
    with pytest.raises(ContentError, match="model.seq_item_init = text: "):
        fit_configured(strict, make_model(strict)[0], matrix)
