"""New launches: launched within the window, never before launch day."""

from __future__ import annotations

from service.candidates.new_launches import NewLaunches
from tests.fixtures.service import ids, rows, slot_query


def test_only_items_launched_in_the_window() -> None:
    q = slot_query("stranger")
    assert ids(q.model, rows(NewLaunches(days=30).fetch(q, 10))) == ["i050", "i051", "i052", "i053"]
    assert ids(q.model, rows(NewLaunches(days=2.5).fetch(q, 10))) == ["i050", "i051"]


def test_a_member_with_a_vector_gets_them_in_taste_order() -> None:
    q = slot_query("m003")
    found = rows(NewLaunches(days=30).fetch(q, 10))
    assert sorted(ids(q.model, found)) == ["i050", "i051", "i052", "i053"]
    taste = q.model.bundle.item_factors[[c.item for c in found]] @ q.model.bundle.member_factors[3]
    assert list(taste) == sorted(taste, reverse=True)
    assert found[0].reason.startswith("new: launched")


def test_the_window_is_scored_from_vectors_kept_with_the_model() -> None:
    q = slot_query("m003")
    kept = q.model.memo("new_launches.windows", dict)
    kept.clear()
    first = rows(NewLaunches(days=30).fetch(q, 10))
    assert len(kept) == 1
    (window,) = kept.values()
    again = rows(NewLaunches(days=30).fetch(slot_query("m003", model=q.model), 10))
    assert [c.item for c in again] == [c.item for c in first]
    assert next(iter(kept.values())) is window  # not rebuilt for the next request
    assert [c.reason for c in again] == [c.reason for c in first]
