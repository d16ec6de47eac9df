"""Ranking metrics against hand-computed values (binary relevance, full lists, K cut-offs)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from training.metrics import ranking_metrics


def _truth(rows: dict[int, list[int]], n_members: int = 4, n_items: int = 20) -> sp.csr_matrix:
    m = [r for r, items in rows.items() for _ in items]
    i = [x for items in rows.values() for x in items]
    t = sp.csr_matrix((np.ones(len(m), dtype=np.float32), (m, i)), shape=(n_members, n_items))
    t.sum_duplicates()
    return t


def _d(rank: int) -> float:  # discount of 0-based rank r
    return 1 / math.log2(rank + 2)


def test_single_item_hit_at_rank_three():
    recs = np.array([[5, 3, 7, 1]])
    r = ranking_metrics(recs, _truth({0: [7]}), np.array([0]), (2, 4), n_items=20)
    # K=2: 7 is third, so no hit at all
    assert (r["recall@2"], r["hr@2"], r["ndcg@2"], r["map@2"]) == (0, 0, 0, 0)
    # K=4: hit at 0-based rank 2
    assert r["recall@4"] == 1
    assert r["hr@4"] == 1
    assert r["ndcg@4"] == pytest.approx(1 / math.log2(4))  # = 0.5, ideal is rank 0
    assert r["map@4"] == pytest.approx(1 / 3)  # precision@3 / min(4, 1)
    assert r["coverage@2"] == pytest.approx(2 / 20)
    assert r["coverage@4"] == pytest.approx(4 / 20)
    assert r["members"] == 1


def test_hit_at_first_rank_is_perfect():
    r = ranking_metrics(np.array([[9, 1, 2]]), _truth({0: [9]}), np.array([0]), (1, 3), n_items=20)
    for k in (1, 3):
        assert r[f"hr@{k}"] == r[f"recall@{k}"] == r[f"ndcg@{k}"] == r[f"map@{k}"] == 1


def test_multi_item_truth():
    recs = np.array([[5, 3, 7, 1]])
    r = ranking_metrics(recs, _truth({0: [3, 1, 9]}), np.array([0]), (2, 4), n_items=20)
    # K=4: hits at ranks 1 and 3 of 3 held-out items
    assert r["recall@4"] == pytest.approx(2 / 3)
    assert r["hr@4"] == 1
    dcg = _d(1) + _d(3)
    idcg = _d(0) + _d(1) + _d(2)  # min(K, |truth|) = 3 ideal positions
    assert r["ndcg@4"] == pytest.approx(dcg / idcg)
    assert r["ndcg@4"] == pytest.approx(0.49819, abs=1e-5)
    assert r["map@4"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    # K=2: one hit at rank 1; ideal is two hits at ranks 0, 1
    assert r["recall@2"] == pytest.approx(1 / 3)
    assert r["hr@2"] == 1
    assert r["ndcg@2"] == pytest.approx(_d(1) / (_d(0) + _d(1)))
    assert r["map@2"] == pytest.approx((1 / 2) / 2)


def test_no_hits_scores_zero():
    r = ranking_metrics(np.array([[1, 2, 3], [4, 5, 6]]), _truth({0: [7], 1: [8, 9]}), np.array([0, 1]),
                        (3,), n_items=10)
    assert r["recall@3"] == r["hr@3"] == r["ndcg@3"] == r["map@3"] == 0
    assert r["coverage@3"] == pytest.approx(6 / 10)
    assert r["members"] == 2


def test_members_are_averaged():
    # member 0 hits at rank 0 (all metrics 1), member 1 misses
    recs = np.array([[4, 1, 2], [4, 1, 2]])
    r = ranking_metrics(recs, _truth({0: [4], 1: [11]}), np.array([0, 1]), (3,), n_items=20)
    assert r["hr@3"] == r["recall@3"] == r["ndcg@3"] == r["map@3"] == pytest.approx(0.5)
    assert r["coverage@3"] == pytest.approx(3 / 20)  # the same three items for both


def test_members_order_follows_the_given_rows():
    # rows of `recommended` belong to `members` in the given order, not to truth row order
    recs = np.array([[8, 0], [3, 0]])
    r = ranking_metrics(recs, _truth({1: [3], 2: [8]}), np.array([2, 1]), (1,), n_items=10)
    assert r["hr@1"] == 1


def test_k_larger_than_the_list():
    # a catalogue of 3 items: lists are shorter than K (padded with -1 or simply narrow)
    truth = _truth({0: [2, 0, 1, 5, 6]})
    for recs in (np.array([[2, 7, 1]]), np.array([[2, 7, 1, -1, -1]])):
        r = ranking_metrics(recs, truth, np.array([0]), (10,), n_items=8)
        assert r["recall@10"] == pytest.approx(2 / 5)
        assert r["hr@10"] == 1
        idcg = sum(_d(k) for k in range(5))  # min(10, 5) ideal positions
        assert r["ndcg@10"] == pytest.approx((_d(0) + _d(2)) / idcg)
        assert r["map@10"] == pytest.approx((1 / 1 + 2 / 3) / 5)
        assert r["coverage@10"] == pytest.approx(3 / 8)  # padding is not an item


def test_truth_larger_than_k_caps_the_ideal():
    # 4 held-out items, K=2, both top slots hit: ndcg and map are perfect, recall is not
    r = ranking_metrics(np.array([[1, 2, 3]]), _truth({0: [1, 2, 8, 9]}), np.array([0]), (2,), n_items=10)
    assert r["ndcg@2"] == pytest.approx(1.0)
    assert r["map@2"] == pytest.approx(1.0)
    assert r["recall@2"] == pytest.approx(0.5)


def test_members_without_held_out_items_are_not_averaged():
    recs = np.array([[4, 1], [4, 1]])
    r = ranking_metrics(recs, _truth({0: [4]}), np.array([0, 1]), (2,), n_items=10)
    assert r["members"] == 1
    assert r["hr@2"] == 1
