"""One contract for every registered candidate source: same shape, whatever the source does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.components import registry
from service.engine.run import run
from service.slots import build_recipe
from tests.fixtures.service import event, slot_query

SOURCES = registry()["source"]

# a request that gives every source something to work with
QUERY = dict(member="m001", recent=[event("m001", "i020", "click")], query="acme", order=("i012",))


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_contract(name: str) -> None:
    source = SOURCES[name]()
    assert source.name == name
    q = slot_query(**QUERY)
    found = source.fetch(q, 7)
    assert len(found), f"{name} found nothing for a request that has what it needs"
    assert len(found) <= 7
    assert found.items.dtype == np.int64 and len(found.scores) == len(found.items)
    items = found.items.tolist()
    assert len(set(items)) == len(items), "a source returns each item once"
    assert all(0 <= i < q.model.n_items for i in items)
    scores = found.scores.tolist()
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True), "best first"
    for k in range(len(found)):
        assert found.explain(k)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_asked_for_nothing_returns_nothing(name: str) -> None:
    assert len(SOURCES[name]().fetch(slot_query(**QUERY), 0)) == 0


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_renamed_in_a_recipe_reports_its_new_name(name: str) -> None:
    recipe = build_recipe("t", {"sources": [{"use": name, "as": "renamed"}], "backfill": None})
    result = run(recipe, slot_query(**QUERY, count=3))
    assert {i.source for i in result.items} == {"renamed"}
    assert {i.reasons[0].step for i in result.items} == {"renamed"}
