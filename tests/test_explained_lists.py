"""Lists that explain themselves: each model's `explain`, the reason / because_items /
score_pct columns of the lists, the items table, the documentation in the database (one
source: sql/warehouse/reference.yaml) and `decayrec sql` for analysts."""

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest
import torch

from decayrec.models import EASE, IALS, ItemKNN
from decayrec.models.base import AlignedScorer, top_contributions
from decayrec.scoring.recommend import POPULARITY_REASON, recommend
from decayrec.warehouse.base import ITEM_SCHEMA
from decayrec.warehouse.queries import run_query
from decayrec.warehouse.reference import README_BEGIN, readme_section, relations
from tests.conftest import ROOT
from tests.test_scoring import FixedScorer, make_matrix


@pytest.fixture(scope="module")
def matrix():
    return make_matrix()


def test_top_contributions_ranks_each_users_terms_and_skips_non_positive_ones():
    x = torch.tensor([[2.0, 0.0, 1.0, 3.0], [0.0, 1.0, 0.0, 0.0]]).to_sparse_csr()
    items = torch.tensor([[1, 0], [2, -1]])
    # term = weight * (history item + 1) * (1 if target is even else -1)
    why = top_contributions(
        x,
        items,
        lambda h, t, w: (w * (h + 1))[:, None, :] * (1 - 2 * (t % 2))[:, :, None],
        top=2,
        chunk_terms=3,
    )
    assert why.items[0, 0].tolist() == [-1, -1]  # target 1 (odd): every term negative
    assert why.items[0, 1].tolist() == [3, 2]  # 3*4 = 12, then 1*3 = 3 (2*1 = 2 is third)
    assert why.weights[0, 1].tolist() == [12.0, 3.0]
    assert why.items[1, 0].tolist() == [1, -1]
    assert why.items[1, 1].tolist() == [-1, -1]  # no item


def test_ease_explains_with_the_largest_terms_of_x_times_b(matrix):
    model = EASE(l2=1.0).fit(matrix)
    x = torch.zeros(1, 6)
    x[0, [0, 3, 4]] = torch.tensor([1.0, 2.0, 0.5])
    why = model.explain(x.to_sparse_csr(), torch.tensor([[1, 5]]), top=3)
    B = model.B
    for slot, j in enumerate([1, 5]):
        terms = {i: float(x[0, i] / model.scale * B[i, j]) for i in (0, 3, 4)}
        expected = [i for i, v in sorted(terms.items(), key=lambda kv: -kv[1]) if v > 0]
        assert why.items[0, slot].tolist()[: len(expected)] == expected
        # with every term positive, they add up to the score
        if len(expected) == 3:
            assert float(why.weights[0, slot].sum()) == pytest.approx(
                float(model.score(x)[0, j]), rel=1e-5
            )


def test_ials_and_an_aligned_model_explain_in_their_own_and_todays_columns(matrix):
    model = IALS(factors=3, iterations=3).fit(matrix)
    x = torch.zeros(1, 6)
    x[0, [0, 3]] = 1.0
    why = model.explain(x.to_sparse_csr(), torch.tensor([[1]]), top=2)
    unit = model.item_factors / model.item_factors.norm(dim=1, keepdim=True)
    cos = {i: float(unit[i] @ unit[1]) for i in (0, 3)}
    assert why.items[0, 0].tolist() == [
        i for i, c in sorted(cos.items(), key=lambda kv: -kv[1]) if c > 0
    ] + [-1] * sum(c <= 0 for c in cos.values())
    # today's catalogue lists the items in reverse: the explanation is mapped back
    aligned = AlignedScorer(model, matrix.item_ids[::-1].copy())
    x_today = torch.flip(x, [1])
    today = aligned.explain(x_today.to_sparse_csr(), torch.tensor([[4]]), top=2)
    back = [5 - i if i >= 0 else -1 for i in why.items[0, 0].tolist()]
    assert today.items[0, 0].tolist() == back
    assert aligned.reasons == IALS.reasons


def test_lists_carry_reasons_because_items_and_score_pct(matrix):
    model = ItemKNN("cosine", neighbours=4).fit(matrix)
    lists = recommend(model, matrix, 3, fallback_reason="popular lately")
    table = lists.to_arrow(matrix)
    rows = table.to_pylist()
    n_items, seen = 6, np.diff(matrix.row_pointer())
    for row in rows:
        u = int(row["user_id"][1:])
        candidates = n_items - seen[u]
        assert row["score_pct"] == pytest.approx((candidates - row["rank"] + 1) / candidates)
        if row["source"] == "fallback":
            assert row["reason"] == "popular lately" and row["because_items"] == []
        else:
            assert row["because_items"], row
            assert set(row["because_items"]) <= {f"i{c}" for c in matrix.cols[matrix.rows == u]}
            noun = "item" if len(row["because_items"]) == 1 else "items"
            assert row["reason"] == (
                f"often chosen with {noun} {', '.join(row['because_items'])}, "
                "which you interacted with"
            )
    assert {r["source"] for r in rows} == {"model", "fallback"}
    # u1 has a single item: every model row names it
    assert {tuple(r["because_items"]) for r in rows if r["user_id"] == "u1"} == {("i1",)}
    # without reasons the lists are the same lists
    plain = recommend(model, matrix, 3, explain=False).to_arrow(matrix)
    same = ["user_id", "rank", "item_id", "score", "source", "score_pct"]
    assert plain.select(same).equals(table.select(same))
    assert plain["reason"].to_pylist() == [
        POPULARITY_REASON if s == "fallback" else "picked by the model from your history"
        for s in plain["source"].to_pylist()
    ]


def test_a_scorer_without_explain_gets_the_generic_model_reason(matrix):
    from tests.test_scoring import SCORES

    table = recommend(FixedScorer(SCORES), matrix, 2).to_arrow(matrix)
    model_rows = [r for r in table.to_pylist() if r["source"] == "model"]
    assert model_rows and all(r["because_items"] == [] for r in model_rows)
    assert {r["reason"] for r in model_rows} == {"picked by the model from your history"}


# ---- the warehouse: columns, items, comments ------------------------------------------

ODD_IDS = ["a,b", 'say "hi"', "back\\slash", "{x}"]


def explained_lists() -> pa.Table:
    return pa.table(
        {
            "user_id": ["2", "10", "10"],
            "rank": pa.array([1, 1, 2], pa.int32()),
            "item_id": ["m1", "m2", "m3"],
            "score": [0.5, 0.9, 0.1],
            "source": ["model", "model", "fallback"],
            "reason": ["because you interacted with items m2, m3", "x", "popular lately"],
            "because_items": pa.array([["m2", "m3"], ODD_IDS, []], pa.list_(pa.string())),
            "score_pct": [1.0, 1.0, 0.5],
        }
    )


def items_table(popularity: float, titles: bool = True) -> pa.Table:
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    return pa.table(
        {
            "item_id": ["m1", "m2", "m3"],
            "title": ["One (1999)", "Two", "Three"] if titles else [None] * 3,
            "attributes": ['{"genres":"Drama"}', None, None],
            "first_seen": [ts, ts, None],
            "last_seen": [ts, ts, None],
            "n_users": [3, 1, None],
            "popularity": [popularity, 1.0, None],
        },
        schema=ITEM_SCHEMA,
    )


@pytest.fixture()
def published(warehouse_target):
    wh = warehouse_target.open()
    wh.ensure_schema()
    d2 = date(2024, 1, 2)
    assert wh.publish(d2, explained_lists(), "run-2", "ease", items=items_table(5.0))
    return wh


def read(wh, query):
    return wh.query(query).to_pylist()


def test_explanations_round_trip_and_items_upsert_newest_first(published):
    wh = published
    rows = read(
        wh,
        "select user_id, rank, reason, because_items, score_pct from recommendations "
        "order by length(user_id), user_id, rank",
    )
    assert [r["user_id"] for r in rows] == ["2", "10", "10"]  # numeric order
    assert rows[1]["because_items"] == ODD_IDS and rows[2]["because_items"] == []
    assert rows[0]["reason"] == "because you interacted with items m2, m3"
    # an older date's items never overwrite a newer date's; the same date's rerun does
    older = items_table(99.0, titles=False)
    assert wh.publish(date(2024, 1, 1), explained_lists(), "run-1", "ease", items=older)
    assert read(wh, "select popularity, title from items where item_id = 'm1'") == [
        {"popularity": 5.0, "title": "One (1999)"}
    ]
    # identical lists: not republished, the items still refreshed
    again = items_table(7.0)
    assert not wh.publish(date(2024, 1, 2), explained_lists(), "run-3", "ease", items=again)
    assert read(wh, "select popularity, run_id from items where item_id = 'm1'") == [
        {"popularity": 7.0, "run_id": "run-3"}
    ]
    assert read(wh, "select count(*) as n from items") == [{"n": 3}]
    explained = run_query(wh, "user_list_explained", {"user_id": "2"}).to_pylist()
    assert [(r["title"], r["because_titles"], r["score_pct"]) for r in explained] == [
        ("One (1999)", "Two; Three", 1.0)
    ]
    assert json.loads(explained[0]["attributes"]) == {"genres": "Drama"}
    odd = run_query(wh, "user_list_explained", {"user_id": "10"}).to_pylist()
    assert odd[0]["because_titles"] == "; ".join(ODD_IDS)  # no titles: the ids
    assert odd[1]["because_titles"] is None


def test_every_table_view_and_column_has_its_comment(published):
    wh = published
    if wh.dialect == "duckdb":
        query = (
            "select table_name, column_name, comment from duckdb_columns() "
            "where schema_name = current_schema() and not internal"
        )
        tables = (
            "select table_name, comment from duckdb_tables() where not internal union all "
            "select view_name, comment from duckdb_views() where not internal"
        )
    else:
        query = (
            "select c.table_name, c.column_name, col_description(cls.oid, c.ordinal_position)"
            " as comment from information_schema.columns c join pg_class cls on cls.relname ="
            " c.table_name join pg_namespace n on n.oid = cls.relnamespace and n.nspname ="
            " c.table_schema where c.table_schema = current_schema()"
        )
        tables = (
            "select table_name, obj_description(cast(quote_ident(table_name) as regclass),"
            " 'pg_class') as comment from information_schema.tables"
            " where table_schema = current_schema()"
        )
    columns = read(wh, query)
    documented = {r.name: r for r in relations()}
    assert {c["table_name"] for c in columns} == set(documented)
    for c in columns:
        expected = documented[c["table_name"]].columns[c["column_name"]]
        assert c["comment"] == expected, c
    assert {t["table_name"]: t["comment"] for t in read(wh, tables)} == {
        name: r.description for name, r in documented.items()
    }


def test_the_readme_table_reference_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    start = readme.index(README_BEGIN)
    assert readme[start : start + len(readme_section())] == readme_section()
    assert "#### `user_decay_params` (table)" in readme_section()
    assert "| `because_items` |" in readme_section()


# ---- decayrec sql -----------------------------------------------------------------


def sql_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DECAYREC_WAREHOUSE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "decayrec.cli", "sql", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_decayrec_sql_formats_lists_queries_in_full_and_never_creates_a_warehouse(tmp_path):
    from decayrec.warehouse import _open

    wh = _open(f"duckdb:///{tmp_path}/data/warehouse.duckdb", _settings())
    wh.ensure_schema()
    wh.publish(date(2024, 1, 2), explained_lists(), "run-2", "ease", items=items_table(5.0))
    as_csv = sql_cli(
        "user_list_explained",
        "--param",
        "user_id=10",
        "--data-dir",
        "data",
        "--format",
        "csv",
        cwd=tmp_path,
    )
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["item_id"] for r in rows] == ["m2", "m3"]
    assert json.loads(rows[0]["because_items"]) == ODD_IDS
    as_json = sql_cli("ab_buckets", "--data-dir", "data", "--format", "json", cwd=tmp_path)
    assert [r["user_id"] for r in json.loads(as_json.stdout)] == ["2", "10"]
    listing = sql_cli(cwd=tmp_path).stdout
    assert "topped up from it." in listing  # fallback_users' summary, to its end
    assert "user_list_explained" in listing
    # no warehouse: one paragraph, and nothing created
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    missing = sql_cli("top_items", cwd=empty)
    assert missing.returncode == 1
    assert "there is no warehouse at duckdb:///decayrec-data/warehouse.duckdb yet" in (
        missing.stderr
    )
    assert len(missing.stderr.strip().splitlines()) == 1
    assert list(empty.iterdir()) == []


def _settings():
    from decayrec.config import WarehouseConfig

    return WarehouseConfig()


def test_the_cold_start_blend_says_new_similar_to_for_the_items_it_scores(matrix):
    from decayrec.content import ColdStartBlend, extend_catalogue, interactions_per_item

    extended = extend_catalogue(matrix, np.array(["new0", "new3"], dtype=object))
    emb = np.eye(8, 4, dtype=np.float32)[[0, 1, 2, 3, 1, 2, 0, 3]]  # new0 ~ i0, new3 ~ i3
    model = ItemKNN("cosine", neighbours=4).fit(matrix)
    blend = ColdStartBlend(
        model, emb, interactions_per_item(extended), 1, 5.0, scale_rank=1, base_items=6
    )
    rows = recommend(blend, extended, 6).to_arrow(extended).to_pylist()
    new = {(r["user_id"], r["item_id"]): r for r in rows if r["item_id"].startswith("new")}
    # u0 saw i0, u3 saw i3: the new item is explained by its twin
    assert new[("u0", "new0")]["because_items"] == ["i0"]
    assert new[("u3", "new3")]["because_items"] == ["i3"]
    assert new[("u0", "new0")]["reason"] == "new, similar to item i0, which you interacted with"
    assert new[("u0", "new3")]["source"] == "fallback"  # no text in common: not blended
    warm = [r for r in rows if r["source"] == "model" and not r["item_id"].startswith("new")]
    assert warm and all(r["reason"].startswith("often chosen with") for r in warm)


def test_itemknn_explains_the_same_with_dense_blocks_and_with_binary_searches(matrix, monkeypatch):
    import decayrec.models.itemknn as itemknn

    model = ItemKNN("cosine", neighbours=4).fit(matrix)
    x = torch.tensor([[1.0, 0.0, 1.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0, 2.0]])
    items = torch.tensor([[1, 4, 5], [0, 3, -1]])
    dense = model.explain(x.to_sparse_csr(), items, top=2)
    monkeypatch.setattr(itemknn, "EXPLAIN_DENSE_VALUES", 1)  # too small: searches
    searched = model.explain(x.to_sparse_csr(), items, top=2)
    assert torch.equal(dense.items, searched.items)
    assert torch.allclose(dense.weights, searched.weights)
    assert dense.items[1, 2].tolist() == [-1, -1]
    assert (dense.items[0] >= 0).any()
