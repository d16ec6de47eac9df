"""The columnar engine serves what the engine it replaced served: same items, same order, same
scores, same reasons, same trace (timings aside), for a sample of members and contexts, on every
built-in slot, the example rules file and a file with every rule type.

The replaced engine is frozen in tests/reference_engine; both run on the same model and the same
member state. A deliberate difference would be listed here and argued in docs/rules.md.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from service.domain import Context, Event, OnlineState, SlotResult
from service.engine.query import SlotQuery
from service.engine.run import run
from service.model import ServingModel
from service.profile import MemberProfile
from service.rules.document import parse
from service.rules.loader import check
from service.rules.recipe import build_rules_registry
from service.slots import DEFAULT_SLOTS, SlotRegistry, default_registry
from tests.fixtures.service import NOW, tiny_model
from tests.fixtures.tiny_bundle import DAY
from tests.reference_engine import pipeline as ref_pipeline
from tests.reference_engine import profile as ref_profile
from tests.reference_engine import slots as ref_slots
from tests.reference_engine.rules import recipe as ref_recipe
from tests.unit.test_step_rerank import column_model, model_with

EXAMPLE = Path(__file__).parents[2] / "service/rules/example_rules.toml"

#: Every rule type, on the tiny bundle's catalogue (see tests/fixtures/tiny_bundle.py).
EVERY_RULE = """
timezone = "UTC"

[[rules]]
name = "Vegan for gold"
type = "tier_only"
tag = "vegan"
tiers = ["gold"]

[[rules]]
name = "Twice a day"
type = "frequency_cap"
max = 2

[slots.check_in]
count = 8
rerank = true

[[slots.check_in.rules]]
name = "Cheap out"
type = "include"
price_min = 8

[[slots.check_in.rules]]
name = "No initech"
type = "exclude"
brand = ["initech"]

[[slots.check_in.rules]]
name = "Stocked"
type = "min_stock"
min_stock = 2

[[slots.check_in.rules]]
name = "Not this month"
type = "bought_recently"
days = 30

[[slots.check_in.rules]]
name = "Hair push"
type = "boost"
category = ["hair"]
factor = 2.5

[[slots.check_in.rules]]
name = "Less snacks"
type = "bury"
category = ["snacks"]
factor = 0.4

[[slots.check_in.rules]]
name = "New push"
type = "boost"
source = ["new_launches"]
factor = 1.3

[[slots.check_in.rules]]
name = "Mix"
type = "diversity"
by = "category"
max = 2
top = 6

[[slots.check_in.rules]]
name = "New in"
type = "quota"
new_launch_days = 30
min = 2
top = 6

[[slots.check_in.rules]]
name = "Few acme"
type = "quota"
brand = ["acme"]
max = 1
top = 5

[[slots.check_in.rules]]
name = "Hero"
type = "pin"
item = "i007"
position = 2

[[slots.check_in.rules]]
name = "Late hero"
type = "pin"
item = "i030"
position = 4
start = 2020-01-01T00:00:00

[[slots.check_in.rules]]
name = "Old hero"
type = "pin"
item = "i031"
position = 1
end = 2021-01-01T00:00:00

[[slots.check_in.rules]]
name = "Out-of-stock hero"
type = "pin"
item = "i000"
position = 3

[slots.search_box]
count = 8

[[slots.search_box.rules]]
name = "Fresh"
type = "shown_today"

[[slots.search_box.rules]]
name = "Brands"
type = "diversity"
by = "brand"
max = 2
top = 8

[[slots.search_box.rules]]
name = "Some trending"
type = "quota"
source = ["trending"]
min = 2
top = 6

[slots.corner]
count = 6
sources = [
  { use = "catalogue", tag = "vegan", weight = 2 },
  { use = "catalogue", as = "fresh", new_launch_days = 10, weight = 1 },
  { use = "repeat_purchase", weight = 1 },
]
backfill = "popular"

[[slots.corner.rules]]
name = "Vegan first"
type = "quota"
tag = "vegan"
min = 3
top = 6

[[slots.corner.rules]]
name = "Hero"
type = "pin"
item = "i052"
position = 5
"""

MEMBERS = ["m000", "m001", "m002", "m003", "m006", "m011", "m019", "someone-new"]
CONTEXTS = [Context(), Context(query="skin"), Context(query="acme vegan", order_item_ids=("i010", "i021")),
            Context(order_item_ids=("i004",), query="drinks")]


def _state(member: str, k: int) -> OnlineState:
    """Fresh events and impressions for some members (fold-in, bought recently, caps), none for others."""
    if k % 3 == 0:
        return OnlineState()
    recent = [Event(member, f"i{(7 * k + j) % 50 + 3:03d}", kind, int(NOW - j * DAY / 3))
              for j, kind in enumerate(("click", "purchase", "view", "cart"))]
    impressions = {f"i{i:03d}": 1 + (i + k) % 3 for i in range(2, 40, 3)}
    return OnlineState(recent, impressions, degraded=(k % 5 == 4))


#: The one deliberate difference: a pin checking whether it may add an item asks every filter, and
#: the old frequency cap wrote its "not applied" note onto the shared query, so it showed up on the
#: position rule that planned around the pin. Components no longer write onto the query.
LEAKED_NOTE = "; state store unavailable: not applied"


def _views(result: SlotResult, reference: bool = False) -> dict[str, Any]:
    def note(kind: str, text: str) -> str:
        return text.replace(LEAKED_NOTE, "") if reference and kind != "filter" else text

    return {"items": [(i.item_id, i.score, i.source, tuple(i.reasons)) for i in result.items],
            "degraded": tuple(result.degraded),
            "trace": [(s.step, s.kind, s.added, s.removed, note(s.kind, s.note), s.moved, s.gave_way)
                      for s in result.trace.steps]}


@lru_cache(maxsize=1)
def _rerank_model() -> ServingModel:
    """Re-ranks by the member's taste (ALS score): an order unlike the blend's."""
    return model_with(column_model("als_score"), "tiny-als-rerank")


def _registries(text: str | None, model: ServingModel) -> tuple[SlotRegistry, Any]:
    if text is None:
        return default_registry(), ref_slots.default_registry()
    config, found = check(parse(text, "toml"), now=NOW, model=model)
    assert config is not None, [p.format() for p in found]
    return build_rules_registry(config, "t"), ref_recipe.build_rules_registry(config, "t")


@pytest.mark.parametrize("rules", ["builtin", "example", "every_rule"])
@pytest.mark.parametrize("reranker", [False, True])
def test_the_columnar_engine_serves_what_the_reference_engine_served(rules: str, reranker: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # the engines are compared on the same recipes: the built-in ones have changed since (check_in's
    # "liked" source) and the rules files build on them
    for slot, spec in ref_slots.DEFAULT_SLOTS.items():
        monkeypatch.setitem(DEFAULT_SLOTS, slot, spec)
    model = _rerank_model() if reranker else tiny_model()
    text = {"builtin": None, "example": EXAMPLE.read_text(), "every_rule": EVERY_RULE}[rules]
    new, old = _registries(text, model)
    compared = 0
    for k, member in enumerate(MEMBERS):
        state = _state(member, k)
        for context in CONTEXTS:
            exclude = frozenset({3, 9, 24}) if k % 2 else frozenset()
            for slot in new.names():
                count = 4 + (k % 3) * 3
                profile = MemberProfile(model, member, state, NOW)
                got = run(new.get(slot), SlotQuery(model, profile, slot, count, context, exclude))
                old_profile = ref_profile.MemberProfile(model, member, state, NOW)
                want = ref_pipeline.run(old.get(slot), ref_pipeline.SlotQuery(
                    model, old_profile, slot, count, context, set(exclude)))
                assert _views(got) == _views(want, reference=True), (rules, member, context, slot)
                # the served path (no trace) serves the same
                quiet = run(new.get(slot), SlotQuery(model, MemberProfile(model, member, state, NOW), slot,
                                                     count, context, exclude, trace=False))
                assert _views(quiet)["items"] == _views(want)["items"], (rules, member, context, slot)
                compared += 1
    assert compared >= 3 * len(MEMBERS) * len(CONTEXTS)
