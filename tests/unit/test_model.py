"""ServingModel: lookups built at load, FAISS search and the ALS fold-in."""

from __future__ import annotations

import numpy as np

from tests.fixtures.service import tiny_model


def test_orderings_and_category_lists_are_built_once_at_load() -> None:
    m = tiny_model()
    pop = m.bundle.popularity_global
    assert np.all(np.diff(pop[m.popular_order]) <= 0)
    assert m.popular_order[0] == 0  # the tiny bundle's most popular item
    for cat, top in enumerate(m.category_top):
        assert np.all(m.category_of[top] == cat)
        assert np.all(np.diff(pop[top]) <= 0)
    assert list(m.item_ids[m.launch_order[:5]]) == ["i054", "i050", "i051", "i052", "i053"]


def test_search_matches_brute_force_inner_product() -> None:
    m = tiny_model()
    v = m.bundle.member_factors[3]
    items, scores = m.search(v, 5)
    brute = np.argsort(-(m.bundle.item_factors @ v))[:5]
    assert list(items) == list(brute)
    assert np.all(np.diff(scores) <= 1e-6)


def test_fold_in_solves_the_implicit_als_normal_equations() -> None:
    """x = (YᵀC Y + λI)⁻¹ YᵀC p with C = 1 + (alpha·conf - 1) on the member's items, dense."""
    m = tiny_model()
    y = m.bundle.item_factors.astype(np.float64)
    items, conf = np.array([3, 7, 12]), np.array([1.5, 0.7, 2.0])
    c = np.ones(m.n_items)
    c[items] = m.alpha * conf
    p = np.zeros(m.n_items)
    p[items] = 1.0
    expected = np.linalg.solve(y.T @ (c[:, None] * y) + m.regularization * np.eye(y.shape[1]), y.T @ (c * p))
    np.testing.assert_allclose(m.fold_in(items, conf), expected, rtol=1e-4, atol=1e-5)


def test_query_matches_brand_category_and_tags_strongest_first() -> None:
    m = tiny_model()
    match = m.match_query("Acme VEGAN")
    strength = dict(zip(m.item_ids[match.items], match.strength, strict=True))
    assert strength["i000"] == 4.0  # acme brand (3) + vegan tag (1)
    assert strength["i003"] == 3.0 and match.fields[3] == "brand"
    assert strength["i005"] == 1.0 and match.fields[5] == "tags"
    assert "i001" not in strength  # globex, no vegan tag
    assert m.match_query("no-such-word").items.size == 0


def test_length_pruned_search_is_exact_and_reads_few_items_when_lengths_vary() -> None:
    from service.model import NormPrunedSearch

    rng = np.random.default_rng(0)
    directions = rng.normal(size=(20_000, 16))
    lengths = rng.pareto(1.2, 20_000) + 0.01  # ALS-like: a few long (popular) items, a long tail
    items = (directions / np.linalg.norm(directions, axis=1, keepdims=True) * lengths[:, None]).astype(
        np.float32)
    search = NormPrunedSearch(items, first_block=256)
    reads = []
    for q in rng.normal(size=(30, 16)).astype(np.float32):
        for k in (1, 10, 100):
            found, scores, read = search.search(q, k)
            brute = np.argsort(-(items @ q), kind="stable")[:k]
            assert set(found.tolist()) == set(brute.tolist())
            np.testing.assert_allclose(scores, (items @ q)[found], rtol=1e-5)
            assert np.all(np.diff(scores) <= 0)
            reads.append(read)
    assert np.mean(reads) < 0.2 * len(items)


def test_length_pruned_search_without_pruning_reads_everything_and_zero_finds_nothing() -> None:
    from service.model import NormPrunedSearch

    rng = np.random.default_rng(1)
    items = rng.normal(size=(3000, 8)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)  # equal lengths: the bound never stops early
    search = NormPrunedSearch(items, first_block=100)
    q = rng.normal(size=8).astype(np.float32)
    found, _, read = search.search(q, 50)
    assert read == 3000 and set(found.tolist()) == set(np.argsort(-(items @ q))[:50].tolist())
    assert len(search.search(np.zeros(8, np.float32), 10)[0]) == 0
    m = tiny_model()
    assert len(m.search(np.zeros(m.bundle.item_factors.shape[1], np.float32), 5)[0]) == 0
