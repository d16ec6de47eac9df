"""One contract for every registered candidate source: same shape, whatever the source does."""

from __future__ import annotations

import math

import pytest

from service.slots import SOURCES
from tests.fixtures.service import event, slot_query

# a request that gives every source something to work with
QUERY = dict(member="m001", recent=[event("m001", "i020", "click")], query="acme", order=("i012",))


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_contract(name: str) -> None:
    source = SOURCES[name]()
    assert source.name == name
    q = slot_query(**QUERY)
    found = source.fetch(q, 7)
    assert found, f"{name} found nothing for a request that has what it needs"
    assert len(found) <= 7
    items = [c.item for c in found]
    assert len(set(items)) == len(items), "a source returns each item once"
    assert all(0 <= i < q.model.n_items and isinstance(i, int) for i in items)
    scores = [c.score for c in found]
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True), "best first"
    for c in found:
        assert c.source == name
        assert c.reasons and c.reasons[0].step == name and c.reasons[0].kind == "source"
        assert c.reasons[0].detail


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_asked_for_nothing_returns_nothing(name: str) -> None:
    assert SOURCES[name]().fetch(slot_query(**QUERY), 0) == []


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_renamed_in_a_recipe_reports_its_new_name(name: str) -> None:
    found = SOURCES[name](name="renamed").fetch(slot_query(**QUERY), 3)
    assert {c.source for c in found} == {"renamed"}
