from __future__ import annotations

import numpy as np

from service.filters.bought_recently import NotBoughtRecently
from tests.fixtures.service import event, slot_query


def test_purchases_from_history_within_the_window_go() -> None:
    items = np.array([10, 11, 12])  # m001 bought i010 35 days ago, i011 2 days ago
    assert NotBoughtRecently(days=7).keep(slot_query("m001"), items).tolist() == [True, False, True]
    assert NotBoughtRecently(days=40).keep(slot_query("m001"), items).tolist() == [False, False, True]


def test_a_purchase_just_tracked_goes_at_once() -> None:
    recent = [event("stranger", "i012", "purchase"), event("stranger", "i013", "cart")]
    q = slot_query("stranger", recent=recent)
    assert NotBoughtRecently(days=1).keep(q, np.array([12, 13])).tolist() == [False, True]
