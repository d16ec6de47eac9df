"""Personal ALS source: nearest items to the member's (possibly folded-in) taste vector."""

from __future__ import annotations

import numpy as np

from service.candidates.als import PersonalAls
from tests.fixtures.service import event, ids, rows, slot_query


def test_known_member_gets_the_top_inner_products() -> None:
    q = slot_query("m003")
    found = rows(PersonalAls().fetch(q, 5))
    brute = np.argsort(-(q.model.bundle.item_factors @ q.model.bundle.member_factors[3]))[:5]
    assert [c.item for c in found] == brute.tolist()
    assert "your history" in found[0].reason


def test_fresh_events_change_the_answer() -> None:
    before = ids(slot_query("m003").model, rows(PersonalAls().fetch(slot_query("m003"), 10)))
    q = slot_query("m003", recent=[event("m003", "i040", "purchase"), event("m003", "i041", "cart")])
    after = rows(PersonalAls().fetch(q, 10))
    assert ids(q.model, after) != before
    assert "latest activity" in after[0].reason


def test_cold_start_member_gets_nothing_from_als() -> None:
    assert rows(PersonalAls().fetch(slot_query("never-seen"), 5)) == []
