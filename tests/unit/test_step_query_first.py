"""Query first: items matching the search box text move up, strongest match first."""

from __future__ import annotations

import numpy as np

from service.engine.slate import Slate
from service.steps.query_first import QueryFirst
from tests.fixtures.service import slot_query


def slate_of(items: list[int]) -> Slate:
    """Blended rows of a source "x", in the given order (scores 1, 0.9, ...)."""
    slate = Slate()
    slate.order = slate.add(np.array(items), slate.origin("x", None), 1.0 - np.arange(len(items)) / 10)
    return slate


def test_matching_items_move_up_strongest_first_and_say_why() -> None:
    slate = slate_of([4, 5, 6, 15])  # 6, 15: acme; 15: +vegan
    QueryFirst().apply(slot_query(query="acme vegan"), slate)
    assert slate.items.tolist() == [15, 6, 5, 4]  # 5 is vegan (tags) only
    why = slate.reasons(int(slate.order[0]))[-1]
    assert why.step == "query_first" and "brand" in why.detail


def test_without_a_query_nothing_moves() -> None:
    slate = slate_of([4, 6])
    QueryFirst().apply(slot_query(), slate)
    assert slate.items.tolist() == [4, 6] and slate.log == []
