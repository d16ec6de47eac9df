"""Interleave blending: weights become shares of positions; duplicates keep their first place."""

from __future__ import annotations

from service.blend import Interleave
from service.domain import Candidate
from tests.fixtures.service import slot_query


def pool(source: str, items: list[int]) -> list[Candidate]:
    return [Candidate(i, 1.0 / (n + 1), source) for n, i in enumerate(items)]


def test_weights_become_position_shares_spread_evenly() -> None:
    blend = Interleave({"a": 0.75, "b": 0.25})
    pools = {"a": pool("a", list(range(100, 112))), "b": pool("b", list(range(200, 204)))}
    out = blend.blend(slot_query(), pools)
    sources = "".join(c.source for c in out[:8])
    assert sources.count("b") == 2 and "bb" not in sources
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)
    assert blend.describe() == "a 75% · b 25%"


def test_an_empty_source_gives_its_share_to_the_others() -> None:
    out = Interleave({"a": 0.5, "b": 0.5}).blend(slot_query(), {"a": pool("a", [1, 2, 3]), "b": []})
    assert [c.item for c in out] == [1, 2, 3]


def test_an_item_from_two_sources_appears_once_with_both_reasons() -> None:
    out = Interleave({"a": 1, "b": 1}).blend(slot_query(), {"a": pool("a", [1, 2]), "b": pool("b", [1, 3])})
    assert [c.item for c in out] == [1, 3, 2]
    assert any(r.detail == "also from b" for r in out[0].reasons)
