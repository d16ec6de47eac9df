"""Popularity sources: global, trending and per category."""

from __future__ import annotations

from service.candidates.popular import Popular, PopularInCategory, Trending
from tests.fixtures.service import event, rows, slot_query


def test_popular_is_the_global_order() -> None:
    q = slot_query("stranger")
    assert [c.item for c in rows(Popular().fetch(q, 4))] == [0, 1, 2, 3]


def test_trending_leads_with_the_growth_leader() -> None:
    q = slot_query("stranger")
    assert rows(Trending().fetch(q, 3))[0].item == 0  # i000 trends in the tiny bundle


def test_category_popular_follows_the_order_else_recent_items() -> None:
    q = slot_query("stranger", order=("i013",))  # hair
    assert {q.model.bundle.items.category[c.item] for c in rows(PopularInCategory().fetch(q, 5))} == {"hair"}
    q = slot_query("stranger", recent=[event("stranger", "i014", "view")])  # snacks
    found = rows(PopularInCategory().fetch(q, 5))
    assert {q.model.bundle.items.category[c.item] for c in found} == {"snacks"}
    assert found[0].reason == "popular in snacks"
    assert rows(PopularInCategory().fetch(slot_query("stranger"), 5)) == []
