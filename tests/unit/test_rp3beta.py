"""RP3beta (training/rp3beta.py) on a 4-item example worked out by hand.

Members x items (confidence 1):  m0 = {0, 1},  m1 = {0, 1, 2},  m2 = {2, 3}.
Member -> item probabilities: m0 (1/2, 1/2, 0, 0), m1 (1/3, 1/3, 1/3, 0), m2 (0, 0, 1/2, 1/2).
Item -> member: item 0 and 1 go to m0 or m1 (1/2 each), item 2 to m1 or m2, item 3 to m2.
With alpha = 1, beta = 0, W = item->member @ member->item with the diagonal dropped:
    W[0] = 1/2 m0 + 1/2 m1 = (-, 5/12, 1/6, 0)      W[2] = 1/2 m1 + 1/2 m2 = (1/6, 1/6, -, 1/4)
    W[1] = (5/12, -, 1/6, 0)                         W[3] = m2 = (0, 0, 1/2, -)
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from training.config import ItemModelConfig, TrainConfig
from training.rp3beta import RP3beta, fit_item_model, item_walks, neighbour_table, top_k_rows, walk_blocks

X = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float32))
W_HAND = np.array([[0, 5 / 12, 1 / 6, 0],
                   [5 / 12, 0, 1 / 6, 0],
                   [1 / 6, 1 / 6, 0, 1 / 4],
                   [0, 0, 1 / 2, 0]])


def test_the_walk_matches_the_hand_computed_matrix() -> None:
    w = RP3beta(k=10, alpha=1.0, beta=0.0).fit(None, X).weights.toarray()
    np.testing.assert_allclose(w, W_HAND, atol=1e-6)


def test_beta_divides_the_arrival_by_popularity_and_alpha_powers_the_probabilities() -> None:
    # items 0-2 have two members, item 3 one: beta = 1 halves every arrival but item 3's
    w = RP3beta(k=10, alpha=1.0, beta=1.0).fit(None, X).weights.toarray()
    np.testing.assert_allclose(w[2], [1 / 12, 1 / 12, 0, 1 / 4], atol=1e-6)
    # alpha = 2: item 3 -> m2 is 1 ** 2, m2 -> item 2 is (1/2) ** 2
    w2 = RP3beta(k=10, alpha=2.0, beta=0.0).fit(None, X).weights.toarray()
    assert w2[3, 2] == pytest.approx(0.25)


def test_scores_are_the_members_row_times_w_and_recommend_leaves_out_seen_items() -> None:
    model = RP3beta(k=10, alpha=1.0, beta=0.0).fit(None, X)
    np.testing.assert_allclose(model.score(np.array([0])), [[5 / 12, 5 / 12, 1 / 3, 0]], atol=1e-6)
    items, scores = model.recommend(np.array([0]), 2, exclude=X)
    assert items[0].tolist() == [2, 3]
    assert scores[0, 0] == pytest.approx(1 / 3)


def test_blocks_of_a_few_walks_give_the_same_matrix() -> None:
    # walks per item = its members' history lengths summed: (2 + 3, 2 + 3, 3 + 2, 2)
    assert item_walks(X).tolist() == [5, 5, 5, 2]
    assert walk_blocks(item_walks(X), 6) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert walk_blocks(item_walks(X), 10) == [(0, 2), (2, 4)]
    w = RP3beta(k=10, alpha=1.0, beta=0.0, block_paths=1).fit(None, X).weights.toarray()
    np.testing.assert_allclose(w, W_HAND, atol=1e-6)


def test_k_bounds_the_neighbours_kept_per_item() -> None:
    w = RP3beta(k=1, alpha=1.0, beta=0.0).fit(None, X).weights
    assert np.diff(w.indptr).max() == 1
    assert w[2].toarray().ravel().tolist() == pytest.approx([0, 0, 0, 1 / 4])


def test_the_neighbour_table_is_best_first_and_padded() -> None:
    ids, scores = RP3beta(k=10, alpha=1.0, beta=0.0).fit(None, X).neighbours(3)
    assert ids.shape == scores.shape == (4, 3) and ids.dtype == np.int32
    assert ids[2].tolist() == [3, 0, 1]  # 1/4, then the 1/6 tie by lower id
    assert ids[3].tolist() == [2, -1, -1] and scores[3].tolist() == pytest.approx([0.5, 0, 0])
    # an item nobody has: no neighbours, and nobody's neighbour
    lonely = sp.csr_matrix(np.array([[1, 1, 0]], dtype=np.float32))
    ids, _ = neighbour_table(RP3beta(k=5).fit(None, lonely).weights, 2)
    assert ids.tolist() == [[1, -1], [0, -1], [-1, -1]]


def test_similar_is_a_row_of_the_table() -> None:
    model = RP3beta(k=10, alpha=1.0, beta=0.0).fit(None, X)
    ids, scores = model.similar(np.array([0, 2]), 2)
    assert ids.tolist() == [[1, 2], [3, 0]]
    assert scores[0].tolist() == pytest.approx([5 / 12, 1 / 6])


def test_too_many_walks_or_off_skips_with_a_note() -> None:
    # 2^2 + 3^2 + 2^2 = 17 walks
    fit = fit_item_model(None, X, ItemModelConfig(max_paths=16))  # type: ignore[arg-type]
    assert fit.model is None and fit.walks == 17
    assert fit.note is not None and "17" in fit.note and "item_model.max_paths 16" in fit.note
    assert fit.as_dict()["skipped"] == fit.note
    off = fit_item_model(None, X, ItemModelConfig(enabled=False))  # type: ignore[arg-type]
    assert off.model is None and off.note is not None and "enabled" in off.note
    on = fit_item_model(None, X, ItemModelConfig(max_paths=17))  # type: ignore[arg-type]
    assert on.model is not None and on.note is None and on.as_dict()["nnz"] == on.model.weights.nnz


def test_config_is_on_by_default_and_validated() -> None:
    assert TrainConfig().item_model.enabled
    with pytest.raises(ValidationError):
        ItemModelConfig(alpha=0)
    with pytest.raises(ValidationError):
        ItemModelConfig(beta=1.5)
    with pytest.raises(ValidationError):
        TrainConfig.model_validate({"item_model": {"neighbours": 5}})


def test_sparse_ranking_scores_and_stats_equal_the_dense_generic_paths() -> None:
    from training.model_api import Model

    rng = np.random.default_rng(3)
    x = sp.random(60, 40, density=0.06, random_state=4, format="csr", dtype=np.float32)
    x.data[:] = rng.integers(1, 4, len(x.data))
    model = RP3beta(k=5, alpha=0.5, beta=0.3).fit(None, x)
    model.batch_size = 7  # several batches
    members = np.arange(60)
    exclude = sp.random(60, 40, density=0.2, random_state=5, format="csr")
    for n in (3, 25):  # 25: most rows reach fewer items, so zero-score items fill them
        fast = model.recommend(members, n, exclude=exclude)
        slow = Model.recommend(model, members, n, exclude=exclude)
        np.testing.assert_allclose(fast[1], slow[1], rtol=1e-6)
        reached = fast[1] > 0  # score-0 ties: the full sort keeps any of them, the fast path the first
        np.testing.assert_array_equal(fast[0][reached], slow[0][reached])
        for row, items in enumerate(fast[0]):
            assert len(set(items.tolist())) == n
            assert not set(items.tolist()) & set(exclude[row].indices.tolist())
            assert np.all(model.score(np.array([row]))[0, items] == fast[1][row])
    items = rng.integers(-1, 40, (60, 9))
    np.testing.assert_allclose(model.score_items(members, items), Model.score_items(model, members, items),
                               rtol=1e-6)
    for fast_stat, slow_stat in zip(model.score_stats(members), Model.score_stats(model, members),
                                    strict=True):
        np.testing.assert_allclose(fast_stat, slow_stat, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("k", [0, 1, 3, 7, 40])
def test_top_k_rows_keeps_each_rows_k_largest_ties_to_the_lower_column(k: int) -> None:
    rng = np.random.default_rng(k)
    for trial in range(20):
        m = sp.random(60, 40, density=rng.uniform(0.0, 0.9), format="csr", dtype=np.float32,
                      random_state=trial)
        m.data = np.round(m.data * 4) / 4 + 0.25  # few distinct values: ties at the k-th are common
        shuffled = m.copy()  # a product's rows come with their columns in any order
        for r in range(m.shape[0]):
            a, b = m.indptr[r], m.indptr[r + 1]
            perm = a + rng.permutation(b - a)
            shuffled.indices[a:b], shuffled.data[a:b] = m.indices[perm], m.data[perm]
        shuffled.has_sorted_indices = False
        got = top_k_rows(shuffled, k)
        assert got.has_sorted_indices
        for r in range(m.shape[0]):
            row = m.getrow(r)
            entries = zip(row.indices.tolist(), row.data.tolist(), strict=True)
            ranked = sorted(entries, key=lambda e: (-e[1], e[0]))
            want = sorted(ranked[:k])  # the k largest, lower column first on ties, in column order
            have = list(zip(got.indices[got.indptr[r]:got.indptr[r + 1]].tolist(),
                            got.data[got.indptr[r]:got.indptr[r + 1]].tolist(), strict=True))
            assert have == want, (trial, r)
