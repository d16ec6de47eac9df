"""Similar-item sources: neighbours of recent items and of the delivered order."""

from __future__ import annotations

import numpy as np

from service.candidates.similar import SimilarToOrder, SimilarToRecent, neighbours, strongest_seeds
from tests.fixtures.service import event, ids, rows, slot_query, tiny_model


def test_neighbours_sum_weighted_similarity_and_never_return_seeds() -> None:
    m = tiny_model()
    items, scores = neighbours(m, np.array([5, 6]), np.array([1.0, 0.5]))
    assert 5 not in items and 6 not in items
    nb, sc = m.bundle.neighbour_items, m.bundle.neighbour_scores
    expected: dict[int, float] = {}
    for seed, w in ((5, 1.0), (6, 0.5)):
        for i, s in zip(nb[seed], sc[seed], strict=True):
            if i not in (5, 6):
                expected[int(i)] = expected.get(int(i), 0.0) + w * float(s)
    assert set(items.tolist()) == set(expected)
    np.testing.assert_allclose(scores, [expected[i] for i in items.tolist()], atol=1e-6)
    best = strongest_seeds(m, np.array([5, 6]), np.array([1.0, 0.5]), items)
    assert set(best.tolist()) <= {5, 6} and len(best) == len(items)


def test_similar_to_order_names_the_ordered_item() -> None:
    q = slot_query("stranger", order=("i012", "unknown-item"))
    found = rows(SimilarToOrder().fetch(q, 5))
    assert ids(q.model, found) == [str(q.model.item_ids[i]) for i in q.model.bundle.neighbour_items[12][:5]]
    assert found[0].reason == "goes with i012 in your order"


def test_similar_to_recent_follows_fresh_events() -> None:
    q = slot_query("stranger", recent=[event("stranger", "i033", "click")])
    found = rows(SimilarToRecent().fetch(q, 3))
    assert {c.item for c in found} <= set(q.model.bundle.neighbour_items[33].tolist())
    assert "i033" in found[0].reason
    assert rows(SimilarToRecent().fetch(slot_query("stranger"), 3)) == []
