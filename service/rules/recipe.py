"""Validated rules -> slot recipes, in the fixed order every slot runs:

    sources (the file's mix) -> hard filters (built-in, then the file's, in file order)
    -> blend -> backfill -> the recipe's own steps (e.g. query_first) -> boosts / buries
    -> re-rank (when ``rerank = true``) -> diversity -> quotas -> pins -> precedence check

The recipe's sources, built-in filters, blend and backfill come from ``service.slots.build_recipe``
(the same code the built-in slots use); the rules only add named filters and steps around them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, get_args
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from service.candidates.catalogue import Catalogue
from service.engine.match import ItemMatcher
from service.engine.query import Filter, Step
from service.experiments import SlotArm, SlotExperiment
from service.filters.attributes import Exclude, Include, MinStock, TierOnly
from service.filters.bought_recently import NotBoughtRecently
from service.filters.frequency_cap import FrequencyCap, ShownToday
from service.positions.diversity import Diversity
from service.positions.pin import Pin
from service.positions.precedence import PrecedenceCheck
from service.positions.quota import Quota
from service.rules.checks import timestamp
from service.rules.guard import RulesRegistry
from service.rules.loader import RulesConfig, SlotConfig
from service.rules.schema import (
    STAGES,
    BoostRule,
    BoughtRecentlyRule,
    BuryRule,
    DiversityRule,
    ExcludeRule,
    FrequencyCapRule,
    IncludeRule,
    MinStockRule,
    PinRule,
    QuotaRule,
    Rule,
    Selector,
    ShownTodayRule,
    TierOnlyRule,
)
from service.slots import SlotRecipe, Use, build_recipe, components, make_component
from service.steps.boost import Boost


def component(rule: Rule, tz: ZoneInfo, pins: tuple[Pin, ...] = ()) -> Filter | Step:
    """The pipeline component for one validated rule, named by the merchandiser (``pins``: the slot's
    pins, which diversity and quotas plan around)."""
    n = rule.name
    match rule:
        case IncludeRule():
            return Include(n, ItemMatcher(rule))
        case ExcludeRule():
            return Exclude(n, ItemMatcher(rule))
        case TierOnlyRule():
            return TierOnly(n, ItemMatcher(rule), tuple(rule.tiers))
        case MinStockRule():
            return MinStock(n, rule.min_stock)
        case BoughtRecentlyRule():
            return NotBoughtRecently(name=n, days=rule.days)
        case ShownTodayRule():
            return ShownToday(name=n)
        case FrequencyCapRule():
            return FrequencyCap(n, rule.max, rule.days)
        case BoostRule() | BuryRule():
            return Boost(n, ItemMatcher(rule), rule.factor)
        case DiversityRule():
            return Diversity(n, rule.by, rule.max, rule.top, pins)
        case QuotaRule():
            return Quota(n, ItemMatcher(rule), rule.top, rule.min, rule.max, pins)
        case PinRule():
            return pin(rule, tz)
    raise TypeError(f"no component for rule type {type(rule).__name__}")


def pin(rule: PinRule, tz: ZoneInfo) -> Pin:
    return Pin(rule.name, rule.item, rule.position, timestamp(rule.start, tz), timestamp(rule.end, tz),
               _when(rule, tz))


def _when(rule: PinRule, tz: ZoneInfo) -> str:
    def show(t: Any) -> str:
        return (t if t.tzinfo else t.replace(tzinfo=tz)).astimezone(tz).strftime("%Y-%m-%d %H:%M")

    if rule.start is None and rule.end is None:
        return ""
    parts = [f"from {show(rule.start)}"] if rule.start else []
    parts += [f"until {show(rule.end)}"] if rule.end else []
    return f"{' '.join(parts)} ({tz.key})"


def rerank_factory() -> Callable[..., Step] | None:
    """The re-ranker step (``service/steps/rerank.py``, registered as "rerank" in ``service.components``)."""
    return components()["step"].get("rerank")


def build_slot(slot: SlotConfig, tz: ZoneInfo) -> SlotRecipe:
    base = build_recipe(slot.name, slot.spec)
    by_stage: dict[str, list[Any]] = {stage: [] for stage in STAGES}
    pin_of = {id(r): pin(r, tz) for r in slot.rules if isinstance(r, PinRule)}
    pins = tuple(pin_of.values())
    for rule in slot.rules:
        by_stage[rule.stage].append(pin_of.get(id(rule)) or component(rule, tz, pins))
    # a built-in recipe's own re-ranker (the file said nothing about `rerank`) runs in its stage too
    own = [s for s in base.steps if s.kind != "rerank"]
    by_stage["rerank"] += [s for s in base.steps if s.kind == "rerank"]
    if slot.rerank:
        by_stage["rerank"].append(make_component("step", Use(use="rerank"), slot.name, "rerank"))
    positional = by_stage["diversity"] + by_stage["quota"] + by_stage["pin"]
    steps = [*own, *(c for stage in STAGES[1:] for c in by_stage[stage])]
    if by_stage["diversity"] or by_stage["quota"]:
        steps.append(PrecedenceCheck(positional))
    return replace(base, filters=(*base.filters, *by_stage["filter"]), steps=tuple(steps))


def build_rules_registry(config: RulesConfig, version: str) -> RulesRegistry:
    recipes = {name: build_slot(slot, config.timezone) for name, slot in config.slots.items()}
    arm_slots = [s for e in config.experiments for a in e.arms for s in a.slots.values()]
    days = max((r.days for s in [*config.slots.values(), *arm_slots] for r in s.rules
                if isinstance(r, FrequencyCapRule)), default=1)
    return RulesRegistry(recipes, version, impression_days=days, outline=config.outline,
                         experiments=build_experiments(config))


def build_experiments(config: RulesConfig) -> dict[str, tuple[SlotExperiment, ...]]:
    """Slot -> the experiments on it, each arm's recipe built like any slot's."""
    out: dict[str, list[SlotExperiment]] = {}
    for e in config.experiments:
        for slot in dict.fromkeys(s for a in e.arms for s in a.slots):
            arms = tuple(SlotArm(a.name, a.weight, build_slot(a.slots[slot], config.timezone), a.model,
                                 a.slots[slot].count) for a in e.arms)
            out.setdefault(slot, []).append(SlotExperiment(e.name, e.salt, arms, e.start, e.end))
    return {slot: tuple(exps) for slot, exps in out.items()}


@dataclass(frozen=True)
class _Validated:
    """A factory for register_component: keyword arguments checked by the rule's schema, so a code
    spec (DEFAULT_SLOTS) gets the rules file's validation; errors are TypeErrors like bad params."""

    rule_type: type[Rule]
    build: Callable[[Any], Any]

    @property
    def name(self) -> str:
        """The rule's ``type`` (its schema's Literal), which names the component."""
        kind: str = get_args(self.rule_type.model_fields["type"].annotation)[0]
        return kind

    def __call__(self, **params: Any) -> Any:
        kind = self.name
        try:
            rule = self.rule_type.model_validate({"type": kind, "name": params.pop("name", kind), **params})
        except ValidationError as e:
            raise TypeError(str(e)) from e
        problems = rule.problems()
        if problems:
            raise TypeError("; ".join(f"{f}: {why}" for f, why in problems))
        return self.build(rule)


def _catalogue(name: str = "catalogue", **selector: Any) -> Catalogue:
    try:
        sel = Selector.model_validate(selector)
    except ValidationError as e:
        raise TypeError(str(e)) from e
    if sel.source is not None:
        raise TypeError("catalogue: 'source' is not an item attribute (use category, brand, tag, items, "
                        "new_launch_days, price_min, price_max)")
    return Catalogue(ItemMatcher(sel), name)


def rule_components() -> dict[str, dict[str, Callable[..., Any]]]:
    """The rule components by their type, usable by name in code specs, and the catalogue source
    (for ``service.components``, which registers every component)."""
    utc = ZoneInfo("UTC")
    filters: tuple[type[Rule], ...] = (IncludeRule, ExcludeRule, TierOnlyRule, MinStockRule, ShownTodayRule,
                                       FrequencyCapRule)
    steps: tuple[type[Rule], ...] = (BoostRule, BuryRule, DiversityRule, QuotaRule, PinRule)
    out: dict[str, dict[str, Callable[..., Any]]] = {"source": {"catalogue": _catalogue}}
    for kind, rule_types in (("filter", filters), ("step", steps)):
        for rule_type in rule_types:
            factory = _Validated(rule_type, lambda r: component(r, utc))
            out.setdefault(kind, {})[factory.name] = factory
    return out
