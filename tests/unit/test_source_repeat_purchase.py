"""Repeat purchases: due when now - last >= 0.8 x the member's own interval."""

from __future__ import annotations

from service.candidates.repeat_purchase import RepeatPurchase
from tests.fixtures.service import event, ids, rows, slot_query


def test_due_consumable_is_offered_with_its_rhythm() -> None:
    q = slot_query("m001")
    found = rows(RepeatPurchase().fetch(q, 5))
    assert ids(q.model, found) == ["i010"]  # i011 was bought 2 days ago: not due
    assert "bought 4 times, about every 18 days, last 35 days ago" in found[0].reason


def test_not_due_below_the_ratio() -> None:
    assert rows(RepeatPurchase(due_ratio=2.0).fetch(slot_query("m001"), 5)) == []


def test_a_fresh_purchase_resets_the_clock() -> None:
    q = slot_query("m001", recent=[event("m001", "i010", "purchase", days_ago=1)])
    assert rows(RepeatPurchase().fetch(q, 5)) == []


def test_members_without_repeat_buys_get_nothing() -> None:
    assert rows(RepeatPurchase().fetch(slot_query("m003"), 5)) == []
    assert rows(RepeatPurchase().fetch(slot_query("stranger"), 5)) == []
