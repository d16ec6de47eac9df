"""FAISS index choice and the recall check (on ALS-like structured vectors)."""

import numpy as np
import pytest

from training.config import IndexConfig
from training.index import EXACT_MAX_SCAN_SHARE, RECALL_TARGET, build_index, exact_top, recall
from training.neighbours import cosine_neighbours


def clustered(n: int, d: int = 16, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Vectors around cluster centres, like trained item factors (not isotropic noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    return (centres[rng.integers(clusters, size=n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def test_recall_counts_overlap_ignoring_order():
    assert recall(np.array([[1, 2, 3]]), np.array([[3, 2, 9]])) == pytest.approx(2 / 3)
    assert recall(np.array([[-1, 2]]), np.array([[2, 5]])) == pytest.approx(0.5)


def test_exact_top_matches_argsort():
    q, v = clustered(5, seed=1), clustered(300, seed=2)
    got = exact_top(q, v, 10)
    want = np.argsort(-(q @ v.T), axis=1)[:, :10]
    assert all(set(a) == set(b) for a, b in zip(got, want, strict=True))


def test_small_catalogue_gets_exact_index_with_perfect_recall():
    items, members = clustered(500), clustered(200, seed=5)
    index, report = build_index(items, members, IndexConfig(exact_below=1000, recall_sample=100))
    assert report.kind == "flat" and report.recall_at_100 == pytest.approx(1.0)
    assert index.ntotal == 500


def test_large_catalogue_gets_ivf_tuned_to_the_recall_target():
    items, members = clustered(6000), clustered(300, seed=5)
    index, report = build_index(items, members, IndexConfig(exact_below=1000, recall_sample=200))
    assert report.kind == "ivf" and report.nlist > 1
    assert report.recall_at_100 >= RECALL_TARGET
    assert index.nprobe == report.nprobe


def test_hnsw_option():
    items, members = clustered(3000), clustered(100, seed=5)
    _, report = build_index(items, members, IndexConfig(kind="hnsw", recall_sample=100))
    assert report.kind == "hnsw" and report.recall_at_100 >= RECALL_TARGET


def test_neighbours_exclude_self_and_pad():
    v = clustered(4, d=4)
    ids, sims = cosine_neighbours(v, 5)
    assert ids.shape == (4, 5)
    for i in range(4):
        assert i not in ids[i] and np.all(ids[i, 3:] == -1) and np.all(sims[i, 3:] == 0)


def test_neighbours_are_most_cosine_similar():
    v = clustered(200)
    ids, _ = cosine_neighbours(v, 5)
    n = v / np.linalg.norm(v, axis=1, keepdims=True)
    sim = n @ n.T
    np.fill_diagonal(sim, -np.inf)
    want = np.argsort(-sim, axis=1)[:, :5]
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids, want, strict=True)]) > 0.99


def als_like(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    """Clustered directions with lengths spanning orders of magnitude (popular items are long),
    as trained ALS item factors have."""
    v = clustered(n, d, seed=seed)
    lengths = np.random.default_rng(seed + 1).pareto(1.2, n) + 0.01
    return (v / np.linalg.norm(v, axis=1, keepdims=True) * lengths[:, None]).astype(np.float32)


def test_zero_member_vectors_are_left_out_of_the_recall_check():
    items = clustered(500)
    members = np.concatenate([clustered(100, seed=5), np.zeros((100, 16), np.float32)])  # no history
    _, report = build_index(items, members, IndexConfig(exact_below=1000, recall_sample=150))
    assert report.kind == "flat" and report.recall_at_100 == pytest.approx(1.0)
    assert report.queries == 100


def test_auto_keeps_exact_search_past_exact_below_when_lengths_prune_it():
    items, members = als_like(6000), clustered(200, seed=5)
    index, report = build_index(items, members, IndexConfig(exact_below=1000, recall_sample=200))
    assert report.kind == "flat" and report.recall_at_100 == pytest.approx(1.0)
    assert report.exact_scan_share is not None and report.exact_scan_share <= EXACT_MAX_SCAN_SHARE
    assert index.ntotal == 6000


def test_neighbours_leave_out_zero_vectors():
    """An item without events has a zero vector: no neighbours, and nobody's neighbour."""
    v = clustered(300)
    v[[3, 7, 250]] = 0
    ids, sims = cosine_neighbours(v, 5, queries=np.array([3, 0, 7, 1]))
    assert np.all(ids[[0, 2]] == -1) and np.all(sims[[0, 2]] == 0)
    full, _ = cosine_neighbours(v, 10)
    assert not np.isin(full, [3, 7, 250]).any()
    assert np.all(full[[0, 1]] >= 0)


def test_neighbours_ivf_reports_recall_against_exact():
    v = als_like(3000)
    searched = []
    ids, _ = cosine_neighbours(v, 10, exact_below=1000, report=searched)
    exact, _ = cosine_neighbours(v, 10)
    assert searched[0].kind.startswith("ivf") and searched[0].items_with_vector == 3000
    measured = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(ids, exact, strict=True)])
    assert searched[0].recall_at_k is not None and abs(searched[0].recall_at_k - measured) < 0.1
