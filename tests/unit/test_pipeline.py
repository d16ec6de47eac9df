"""The slate engine: sources -> filters -> blend -> backfill -> steps -> cut, all traced."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from service.components import registry
from service.engine.query import Report, SlotQuery
from service.engine.run import run
from service.engine.slate import Found, Slate
from service.slots import build_recipe
from tests.fixtures.service import slot_query


@dataclass
class Fixed:
    """A fake source that returns the items it was given."""

    items: tuple[int, ...]
    name: str = "fixed"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        items = np.array(self.items[:n], dtype=np.int64)
        return Found(items, 1.0 - np.arange(len(items)) / 100, lambda k: "fixed")


@dataclass
class DropFirst:
    name: str = "drop_first"
    kind: ClassVar[str] = "rule"

    def apply(self, q: SlotQuery, slate: Slate) -> Report | None:
        slate.order = slate.order[1:]
        return None


def recipe(items: tuple[int, ...], **extra):  # type: ignore[no-untyped-def]
    tables = registry()
    tables["source"]["fixed"] = lambda name="fixed": Fixed(items, name)
    tables["step"]["drop_first"] = DropFirst
    try:
        return build_recipe("t", {"sources": ["fixed"], **extra})
    finally:
        del tables["source"]["fixed"], tables["step"]["drop_first"]


def test_every_filter_runs_and_the_trace_says_what_it_removed() -> None:
    # i000 out of stock, i001 off shelf, i011 bought 2 days ago by m001, i005 in the order, i006 on the page
    q = slot_query("m001", order=("i005",), exclude={6}, count=3)
    result = run(recipe((0, 1, 11, 5, 6, 7, 8, 9, 12)), q)
    assert [i.item_id for i in result.items] == ["i007", "i008", "i009"]
    t = result.trace
    assert t.removed_by("in_stock") == ["i000"]
    assert t.removed_by("on_shelf") == ["i001"]
    assert t.removed_by("bought_recently") == ["i011"]
    assert t.removed_by("just_ordered") == ["i005"]
    assert t.removed_by("page_dedup") == ["i006"]
    assert t.removed_by("cut") == ["i012"]
    assert [s.step for s in t.steps][:2] == ["fixed", "in_stock"]
    assert all(s.ms >= 0 for s in t.steps)


def test_short_slots_are_backfilled_through_the_same_filters() -> None:
    result = run(recipe((7,)), slot_query("stranger", count=4))
    assert [i.item_id for i in result.items] == ["i007", "i002", "i003", "i004"]  # i000/i001 filtered
    assert [i.source for i in result.items] == ["fixed", "popular", "popular", "popular"]
    assert result.items[1].reasons[-1].kind == "backfill"
    assert "i000" in result.trace.removed_by("in_stock")
    scores = [i.score for i in result.items]
    assert scores == sorted(scores, reverse=True)


def test_no_backfill_serves_what_there_is() -> None:
    result = run(recipe((7,), backfill=None), slot_query("stranger", count=4))
    assert [i.item_id for i in result.items] == ["i007"]


def test_steps_run_after_the_blend_and_are_traced() -> None:
    result = run(recipe((7, 8, 9), steps=["drop_first"]), slot_query("stranger", count=2))
    assert [i.item_id for i in result.items] == ["i008", "i009"]
    assert result.trace.removed_by("drop_first") == ["i007"]


def test_served_items_carry_their_source_reason() -> None:
    result = run(recipe((7,)), slot_query("stranger", count=1))
    assert result.items[0].reasons[0].step == "fixed"


def test_without_a_trace_the_slot_serves_the_same_items_and_reasons() -> None:
    r = recipe((0, 1, 11, 5, 6, 7, 8, 9, 12), steps=["drop_first"])
    traced = run(r, slot_query("m001", order=("i005",), exclude={6}, count=3))
    q = replace(slot_query("m001", order=("i005",), exclude={6}, count=3), trace=False)
    quiet = run(r, q)  # the served path: no ids, diffs or timings written
    assert quiet.items == traced.items and quiet.trace.steps == []
    assert traced.trace.steps
