"""MemberProfile: bundle history merged with fresh events from the state store."""

from __future__ import annotations

import numpy as np
import pytest

from service.domain import OnlineState
from service.profile import MemberProfile
from tests.fixtures.service import NOW, event, tiny_model


def test_known_member_without_fresh_events_uses_the_trained_vector() -> None:
    m = tiny_model()
    p = MemberProfile(m, "m003", OnlineState(), NOW)
    np.testing.assert_array_equal(p.vector, m.bundle.member_factors[3])
    assert not p.folded_in


def test_unknown_member_is_a_cold_start_until_it_acts() -> None:
    m = tiny_model()
    assert MemberProfile(m, "stranger", OnlineState(), NOW).vector is None
    p = MemberProfile(m, "stranger", OnlineState([event("stranger", "i020", "cart")]), NOW)
    assert p.folded_in and p.vector is not None
    assert list(m.item_ids[p.seeds[0]]) == ["i020"]


def test_fresh_events_move_the_vector_and_lead_the_seeds() -> None:
    m = tiny_model()
    p = MemberProfile(m, "m003", OnlineState([event("m003", "i040", "purchase"), event("m003", "zzz")]), NOW)
    assert p.seeds[0][0] == m.item_index["i040"]  # newest first; unknown item ids are skipped
    assert not np.allclose(p.vector, m.bundle.member_factors[3])


def test_purchases_come_from_history_and_fresh_events() -> None:
    m = tiny_model()
    p = MemberProfile(m, "m001", OnlineState([event("m001", "i030", "purchase", days_ago=1)]), NOW)
    bought = {str(m.item_ids[i]): (NOW - ts) / 86400 for i, ts in zip(*p.purchases, strict=True)}
    assert bought == {"i010": 35, "i011": 2, "i030": 1}
    assert p.purchases.last(np.array([30, 12])).tolist() == [NOW - 86400, -1]
    assert sorted(m.item_ids[p.purchases.since(NOW - 3 * 86400)]) == ["i011", "i030"]


def test_the_slots_of_a_page_share_one_taste_search(monkeypatch: pytest.MonkeyPatch) -> None:
    m = tiny_model()
    calls: list[int] = []
    search = m.search
    monkeypatch.setattr(m, "search", lambda vector, k: calls.append(k) or search(vector, k))
    p = MemberProfile(m, "m003", OnlineState(), NOW)
    first, _ = p.nearest(10)
    more, scores = p.nearest(25)  # a later slot asks for more (page exclusions): still one search
    assert len(calls) == 1
    direct, direct_scores = search(p.vector, 25)
    assert more.tolist() == direct.tolist() and first.tolist() == direct[:10].tolist()
    np.testing.assert_allclose(scores, direct_scores)
    assert MemberProfile(m, "stranger", OnlineState(), NOW).nearest(5)[0].tolist() == []
