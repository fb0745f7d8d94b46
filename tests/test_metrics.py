"""ranking_metrics on hand-computed rankings (binary relevance, log2 discount)."""

import math

import numpy as np
import pytest

from decayrec.evaluation.metrics import ranking_metrics

A, B, C, D, X, Y = 0, 1, 2, 3, 7, 8
REL = 1e-12


def approx(v):
    return pytest.approx(v, rel=REL)


def test_one_user_two_relevant_one_miss_between():
    # truth {a, b}, ranked [a, x, b]
    m = ranking_metrics(np.array([[A, X, B]]), [{A, B}], ks=[1, 2, 3], n_catalog=10)
    assert m["n_users"] == 1
    # K=3: DCG = 1 + 1/log2(4); ideal over min(2, 3) = 2 slots: 1 + 1/log2(3)
    assert m["ndcg@3"] == approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert m["recall@3"] == approx(1.0)
    assert m["map@3"] == approx((1 / 1 + 2 / 3) / 2)
    assert m["hitrate@3"] == 1.0
    assert m["coverage@3"] == approx(3 / 10)
    # K=2: one hit at rank 1, ideal still over 2 slots
    assert m["ndcg@2"] == approx(1 / (1 + 1 / math.log2(3)))
    assert m["recall@2"] == approx(1 / 2)
    assert m["map@2"] == approx(1 / 2)
    assert m["coverage@2"] == approx(2 / 10)
    # K=1: min(|T|, 1) = 1, so a hit at rank 1 is perfect
    assert m["ndcg@1"] == approx(1.0)
    assert m["recall@1"] == approx(1.0)
    assert m["map@1"] == approx(1.0)
    assert m["coverage@1"] == approx(1 / 10)


def test_truth_larger_than_k_uses_min_of_truth_and_k():
    # truth {a, b, c, d}, ranked [x, a, b]: ideal DCG over 3 slots, not 4
    m = ranking_metrics(np.array([[X, A, B]]), [{A, B, C, D}], ks=[3], n_catalog=9)
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"] == approx(dcg / ideal)
    assert m["recall@3"] == approx(2 / 3)
    assert m["map@3"] == approx((1 / 2 + 2 / 3) / 3)
    assert m["hitrate@3"] == 1.0


def test_all_relevant_is_perfect_even_when_truth_exceeds_k():
    m = ranking_metrics(np.array([[A, B]]), [{A, B, C, D}], ks=[2], n_catalog=4)
    assert m["ndcg@2"] == approx(1.0)
    assert m["recall@2"] == approx(1.0)
    assert m["map@2"] == approx(1.0)


def test_padding_minus_one_is_never_a_hit_nor_covered():
    # user 0: short list [a] padded; user 1: empty list; user 2: [y, b, -1] with truth {b}
    ranked = np.array([[A, -1, -1], [-1, -1, -1], [Y, B, -1]])
    truth = [{A, B}, {C}, {B}]
    m = ranking_metrics(ranked, truth, ks=[3], n_catalog=10)
    ndcg = [1 / (1 + 1 / math.log2(3)), 0.0, (1 / math.log2(3)) / 1]
    recall = [1 / 2, 0.0, 1.0]
    ap = [(1 / 1) / 2, 0.0, (1 / 2) / 1]
    assert m["n_users"] == 3
    assert m["ndcg@3"] == approx(np.mean(ndcg))
    assert m["recall@3"] == approx(np.mean(recall))
    assert m["map@3"] == approx(np.mean(ap))
    assert m["hitrate@3"] == approx(2 / 3)
    # distinct shown items: a, y, b
    assert m["coverage@3"] == approx(3 / 10)


def test_users_are_averaged_with_equal_weight_and_coverage_counts_distinct():
    ranked = np.array([[A, B], [A, C], [X, Y]])
    truth = [{A}, {C, D}, {A}]
    m = ranking_metrics(ranked, truth, ks=[2], n_catalog=20)
    # user 0: hit at 1 (ideal 1 slot) -> 1; user 1: hit at 2 of ideal 2 slots; user 2: none
    ndcg1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["ndcg@2"] == approx((1 + ndcg1 + 0) / 3)
    assert m["recall@2"] == approx((1 + 1 / 2 + 0) / 3)
    assert m["map@2"] == approx((1 + (1 / 2) / 2 + 0) / 3)
    assert m["hitrate@2"] == approx(2 / 3)
    # a, b, c, x, y
    assert m["coverage@2"] == approx(5 / 20)


def test_no_users():
    assert ranking_metrics(np.zeros((0, 3), dtype=np.int64), [], ks=[3], n_catalog=5) == {
        "n_users": 0
    }


def test_vectorised_metrics_match_a_per_user_computation():
    """Random lists (padded with -1) and truth sets against the formulas user by user."""
    rng = np.random.default_rng(3)
    n_users, n_items, k = 300, 40, 10
    ranked = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    ranked[rng.random(ranked.shape) < 0.1] = -1  # short lists
    ranked[:5] = -1  # users with nothing to show
    truth = [set(rng.choice(n_items, rng.integers(0, 12), replace=False).tolist()) for _ in ranked]
    got = ranking_metrics(ranked, truth, ks=[5, 10], n_catalog=n_items)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    for kk in (5, 10):
        ndcg, recall = [], []
        for row, t in zip(ranked, truth, strict=True):
            hit = np.array([item in t for item in row[:kk]], dtype=float)
            ideal = discount[: min(len(t), kk)].sum()
            ndcg.append((hit * discount[:kk]).sum() / ideal if ideal else 0.0)
            recall.append(hit.sum() / max(min(len(t), kk), 1))
        assert got[f"ndcg@{kk}"] == pytest.approx(np.mean(ndcg), rel=1e-12)
        assert got[f"recall@{kk}"] == pytest.approx(np.mean(recall), rel=1e-12)
    assert 0 < got["ndcg@10"] < 1
