"""Query match: the search box text against brand, category and tags."""

from __future__ import annotations

from service.candidates.query_match import QueryMatch
from tests.fixtures.service import rows, slot_query


def test_brand_matches_first_then_taste_decides() -> None:
    q = slot_query("m003", query="acme")
    found = rows(QueryMatch().fetch(q, 50))
    assert {q.model.bundle.items.brand[c.item] for c in found} == {"acme"}
    assert found[0].reason == "matches 'acme' on brand"


def test_stronger_matches_rank_above_weaker_ones() -> None:
    q = slot_query("stranger", query="acme vegan")
    found = rows(QueryMatch().fetch(q, 50))
    both = [c for c in found if c.item % 15 == 0]  # acme (i % 3 == 0) and vegan (i % 5 == 0)
    assert both and min(c.score for c in both) > max(c.score for c in found if c.item % 15)


def test_no_query_or_no_match_gives_nothing() -> None:
    assert rows(QueryMatch().fetch(slot_query(query="  "), 5)) == []
    assert rows(QueryMatch().fetch(slot_query(query="zzz"), 5)) == []


def test_only_the_strengths_that_can_reach_the_top_are_scored() -> None:
    q = slot_query("m003", query="acme vegan")
    hits = q.model.match_query("acme vegan")
    strong = hits.strongest(3, 0.5)
    top3 = sorted(hits.strength, reverse=True)[2]
    assert set(hits.strength[strong]) == {s for s in hits.strength if s > top3 - 0.5}
    assert len(hits.strongest(len(hits.items) + 5, 0.5)) == len(hits.items)
    # the top n is what scoring every match gives: a weaker match never passes a stronger one
    found = rows(QueryMatch().fetch(q, 4))
    everything = rows(QueryMatch().fetch(q, len(hits.items)))
    assert [c.item for c in found] == [c.item for c in everything[:4]]
