"""Boost and bury: a factor on matching items' scores, then a stable re-sort; reasons name the rule."""

from __future__ import annotations

from tests.fixtures.rules import POPULAR, ids, registry, serve, steps

BOOST = POPULAR + '[[slots.t.rules]]\nname = "Vegan week"\ntype = "boost"\ntag = "vegan"\nfactor = 3\n'


def test_boost_lifts_matching_items_and_says_so() -> None:
    before = ids(serve(registry(POPULAR), count=6))
    result = serve(registry(BOOST), count=6)
    assert "i010" not in before and "i010" in ids(result)  # vegan: lifted from below the cut
    assert ids(result)[0] == "i005"  # the best vegan item goes first
    assert "Vegan week" in steps(result, "i010")
    reason = next(r for i in result.items if i.item_id == "i010" for r in i.reasons if r.step == "Vegan week")
    assert reason.kind == "boost" and reason.detail == "boosted ×3: tag vegan"
    scores = [i.score for i in result.items]
    assert scores == sorted(scores, reverse=True)


def test_bury_pushes_matching_items_down_and_keeps_the_rest_in_order() -> None:
    reg = registry(POPULAR + '[[slots.t.rules]]\nname = "Less snacks"\ntype = "bury"\ncategory = "snacks"\n'
                   'factor = 0.1\n')
    result = ids(serve(reg, count=6))
    assert result == ["i003", "i004", "i005", "i007", "i008", "i009"]  # i002, i006 are snacks
    trace = serve(reg, count=6).trace
    step = next(s for s in trace.steps if s.step == "Less snacks")
    assert step.kind == "boost" and "i002 1->" in " ".join(step.moved)


def test_boost_by_source_acts_only_on_that_sources_items() -> None:
    reg = registry("""
[slots.t]
sources = [{ use = "popular", weight = 3 }, { use = "new_launches", weight = 1 }]
backfill = "none"
[[slots.t.rules]]
name = "New first"
type = "boost"
source = "new_launches"
factor = 10
""")
    result = serve(reg, count=4)
    assert [i.source for i in result.items][:2] == ["new_launches", "new_launches"]
