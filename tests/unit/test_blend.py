"""Interleave blending: weights become shares of positions; duplicates keep their first place."""

from __future__ import annotations

import numpy as np

from service.blend import Interleave, interleave
from service.engine.slate import Slate
from tests.fixtures.service import slot_query
from tests.unit.test_engine_equivalence import first_difference, golden, plain


def blended(weights: dict[str, float], pools: dict[str, list[int]]) -> Slate:
    """A slate of the pools' items, blended by ``Interleave(weights)``."""
    slate = Slate()
    rows = [slate.add(np.array(items, np.int64), slate.origin(name, None), 1.0)
            for name, items in pools.items()]
    Interleave(weights).blend(slot_query(), slate, rows)
    return slate


def test_weights_become_position_shares_spread_evenly() -> None:
    slate = blended({"a": 0.75, "b": 0.25}, {"a": list(range(100, 112)), "b": list(range(200, 204))})
    sources = "".join(slate.names(slate.order[:8]).tolist())
    assert sources.count("b") == 2 and "bb" not in sources
    scores = slate.score[slate.order].tolist()
    assert scores == sorted(scores, reverse=True)
    assert Interleave({"a": 0.75, "b": 0.25}).describe() == "a 75% · b 25%"


def test_an_empty_source_gives_its_share_to_the_others() -> None:
    assert blended({"a": 0.5, "b": 0.5}, {"a": [1, 2, 3], "b": []}).items.tolist() == [1, 2, 3]


def test_an_item_from_two_sources_appears_once_with_both_reasons() -> None:
    slate = blended({"a": 1, "b": 1}, {"a": [1, 2], "b": [1, 3]})
    assert slate.items.tolist() == [1, 3, 2]
    assert [r.detail for r in slate.reasons(int(slate.order[0]))][-1] == "also from b"


def test_a_limit_stops_the_blend_early_with_the_same_prefix() -> None:
    pools = [[1, 2, 3, 4, 5], [3, 6, 7], [8, 1, 9]]
    whole, _ = interleave(pools, [0.5, 0.3, 0.2])
    assert interleave(pools, [0.5, 0.3, 0.2], 4)[0] == whole[:4]


def test_same_order_scores_and_reasons_as_the_replaced_blend_on_random_pools() -> None:
    """Random pools and weights, and the replaced blend's order, scores and reasons for them, are in the
    engine golden file (see tests/unit/test_engine_equivalence.py for where it came from)."""
    cases = golden()["blend"]
    assert len(cases) == 300
    for n, case in enumerate(cases):
        slate = blended(case["weights"], case["pools"])
        got = plain([(int(slate.item[r]), float(slate.score[r]), str(slate.names(np.array([r]))[0]),
                      [x.detail for x in slate.reasons(r)]) for r in slate.order.tolist()])
        diff = first_difference(got, case["want"])
        assert diff is None, (f"blend case {n} (weights {case['weights']}, pools {case['pools']}): "
                              f"differs from the replaced blend at {diff}")
