"""Query first: search box items matching the typed text move to the top."""

from __future__ import annotations

from service.domain import Candidate
from service.steps.query_first import QueryFirst
from tests.fixtures.service import slot_query


def test_matching_items_move_up_strongest_first_and_say_why() -> None:
    cands = [Candidate(i, 1.0 - n / 10, "x") for n, i in enumerate([4, 5, 6, 15])]  # 6, 15: acme; 15: +vegan
    out = QueryFirst().apply(slot_query(query="acme vegan"), cands)
    assert [c.item for c in out] == [15, 6, 5, 4]  # 5 is vegan (tags) only
    assert out[0].reasons[-1].step == "query_first" and "brand" in out[0].reasons[-1].detail


def test_without_a_query_nothing_moves() -> None:
    cands = [Candidate(i, 1.0 - n / 10, "x") for n, i in enumerate([4, 6])]
    assert QueryFirst().apply(slot_query(), cands) == cands
