"""Checks across the fields of a slot: its components exist, rule names are unique, pins do not
collide, positions are visible, and (with a bundle) the items, categories, brands, tags and tiers
the rules name exist. Errors block the file; warnings are printed and logged.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from service.engine.match import known_values
from service.model import ServingModel
from service.rules.document import Path_
from service.rules.loader import Collector, SlotConfig, rule_label
from service.rules.schema import DiversityRule, PinRule, QuotaRule, Rule, Selector, SlotTable, TierOnlyRule
from service.slots import RecipeError, Use, make_component

RESERVED = ("precedence",)  # the name of the check step the builder adds


def check_slot(c: Collector, slot: SlotConfig, table: SlotTable, rules: list[tuple[Rule, Path_]],
               path: Path_, tz: ZoneInfo, model: ServingModel | None, now: float) -> None:
    from service.rules.recipe import rerank_factory

    sources = _components(c, slot, table, path)
    if slot.rerank and rerank_factory() is None:
        c.add("error", "no re-ranker step is installed in this build (service/steps/rerank.py)",
              (*path, "rerank"), slot=slot.name, field="rerank")
    elif slot.rerank:
        try:
            make_component("step", Use(use="rerank"), slot.name, "rerank")
        except RecipeError as e:
            c.add("error", e.why, (*path, "rerank"), slot=slot.name, field="rerank")
        if model is not None:
            from service.rerank.runtime import rerank_runtime

            runtime = rerank_runtime(model)
            if not runtime.ready:
                c.add("warning", f"{runtime.problem or runtime.absent}: the slot is served in its "
                                 "first-stage order, marked degraded", (*path, "rerank"), slot=slot.name,
                      field="rerank")
    seen: dict[str, Path_] = {}
    for rule, where in rules:
        label = rule_label({"name": rule.name}, f"rules[{where[-1]}]")
        own = where[0] == "slots"  # every-slot rules: slot-free problems are reported once
        if rule.name in seen and own:
            c.add("error", f"another rule of this slot is already called {rule.name!r}: names must be unique "
                           "(they identify rules in reasons and traces)", (*where, "name"), slot=slot.name,
                  rule=label, field="name")
        if rule.name in RESERVED:
            c.add("error", f"{rule.name!r} is reserved", (*where, "name"), rule=label, field="name")
        seen.setdefault(rule.name, where)
        slot_name = slot.name if own else None
        if isinstance(rule, Selector) and rule.source:
            for s in rule.source:
                if s not in sources:
                    have = ", ".join(sorted(sources))
                    c.add("warning", f"slot '{slot.name}' has no source {s!r} (it has {have}): the rule "
                                     "never matches there", (*where, "source"), slot=slot.name, rule=label,
                          field="source")
        if model is not None:
            _against_model(c, rule, where, label, model, slot_name)
        if isinstance(rule, QuotaRule | DiversityRule) and slot.count is not None and rule.top > slot.count:
            c.add("warning", f"top {rule.top} is beyond the {slot.count} items the slot shows: only the "
                             f"first {slot.count} count", (*where, "top"), slot=slot.name, rule=label,
                  field="top")
        if isinstance(rule, PinRule):
            _pin(c, rule, where, label, slot, tz, now)
    _overlaps(c, [(r, w) for r, w in rules if isinstance(r, PinRule)], slot, tz)


def _components(c: Collector, slot: SlotConfig, table: SlotTable, path: Path_) -> set[str]:
    """Build each source, filter and step once, to report unknown names and bad parameters."""
    names: set[str] = {"pin"}
    for kind, key in (("source", "sources"), ("filter", "filters"), ("step", "steps")):
        for i, raw in enumerate(slot.spec.get(key) or []):
            use = Use.model_validate(raw)
            try:
                built: Any = make_component(kind, use, slot.name, f"{key}[{i}]")
            except RecipeError as e:
                c.add("error", e.why, (*path, key, i), slot=slot.name, field=f"{key}[{i}]")
                continue
            if kind == "source":
                if built.name in names - {"pin"}:
                    c.add("error", f"source {built.name!r} is used twice; give the second one as = \"NAME\"",
                          (*path, key, i), slot=slot.name, field=f"{key}[{i}]")
                names.add(built.name)
    backfill = slot.spec.get("backfill", "popular")
    if backfill:
        try:
            names.add(make_component("source", Use(use=backfill), slot.name, "backfill").name)
        except RecipeError as e:
            c.add("error", e.why, (*path, "backfill"), slot=slot.name, field="backfill")
    return names


def _against_model(c: Collector, rule: Rule, where: Path_, label: str, model: ServingModel,
                   slot: str | None) -> None:
    if isinstance(rule, Selector):
        for f in ("category", "brand", "tag"):
            wanted = getattr(rule, f) or []
            known = known_values(model, f)
            for value in wanted:
                if value.lower() not in known:
                    c.add("warning", f"no item has {f} {value!r} in model {model.version}", (*where, f),
                          slot=slot, rule=label, field=f)
        missing = [i for i in rule.items or [] if i not in model.item_index]
        if missing:
            c.add("warning", f"not in model {model.version}: {', '.join(missing)}", (*where, "items"),
                  slot=slot, rule=label, field="items")
    if isinstance(rule, TierOnlyRule):
        tiers = set(model.bundle.members.tier.astype(str).tolist())
        lowered = {t.lower() for t in tiers}
        for t in rule.tiers:
            if t.lower() not in lowered:
                c.add("warning", f"no member has tier {t!r} (tiers: {', '.join(sorted(tiers))})",
                      (*where, "tiers"), slot=slot, rule=label, field="tiers")
    if isinstance(rule, PinRule) and rule.item not in model.item_index:
        c.add("warning", f"item {rule.item} is not in model {model.version}: the pin gives way until it is",
              (*where, "item"), slot=slot, rule=label, field="item")


def _pin(c: Collector, rule: PinRule, where: Path_, label: str, slot: SlotConfig, tz: ZoneInfo,
         now: float) -> None:
    if slot.count is not None and rule.position > slot.count:
        c.add("error", f"position {rule.position} is beyond the {slot.count} items the slot shows (count)",
              (*where, "position"), slot=slot.name, rule=label, field="position")
    end = timestamp(rule.end, tz)
    if end is not None and end <= now:
        c.add("warning", "the pin's end has passed: it never applies", (*where, "end"), slot=slot.name,
              rule=label, field="end")


def _overlaps(c: Collector, pins: list[tuple[Rule, Path_]], slot: SlotConfig, tz: ZoneInfo) -> None:
    for j, (b, wb) in enumerate(pins):
        for a, _ in pins[:j]:
            assert isinstance(a, PinRule) and isinstance(b, PinRule)
            same = "position" if a.position == b.position else "item" if a.item == b.item else None
            if same is None:
                continue
            lo = max(timestamp(a.start, tz) or float("-inf"), timestamp(b.start, tz) or float("-inf"))
            hi = min(timestamp(a.end, tz) or float("inf"), timestamp(b.end, tz) or float("inf"))
            if lo < hi:
                what = f"position {b.position}" if same == "position" else f"item {b.item}"
                c.add("error", f"overlaps pin '{a.name}' (same {what}, date ranges overlap): one {same} "
                               "cannot be pinned twice at once", (*wb, "start" if b.start else "position"),
                      slot=slot.name, rule=rule_label({"name": b.name}, f"rules[{wb[-1]}]"),
                      field="start" if b.start else "position")


def timestamp(t: dt.datetime | None, tz: ZoneInfo) -> float | None:
    """A pin's date-time in seconds; a naive one is in the file's time zone."""
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=tz)).timestamp()
