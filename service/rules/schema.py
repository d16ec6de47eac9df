"""The rules file as data: one pydantic model per rule type (``RULE_TYPES``), the slot table and the
file's top level.

The loader validates the file piece by piece (the top level, each slot, each rule on its own), so
every mistake in a file is reported at once with its slot, rule and field. Text fields are strict:
a YAML ``012`` (a number) or a TOML ``brand = 12`` is an error that says "put it in quotes", never a
silently different id. Checks that need several fields (``min`` above ``top``) live in each rule's
``problems()``, so they name their field too.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr

from service.slots import Use

#: Stages of a slot, in the order they run (see service/rules/__init__.py for the precedence).
STAGES = ("filter", "boost", "rerank", "diversity", "quota", "pin")


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _as_datetime(value: Any) -> Any:
    """A bare date (TOML ``2025-06-01``, YAML ``2025-06-01``) means the start of that day."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time())
    return value


Text = Annotated[StrictStr, Field(min_length=1)]
Texts = Annotated[list[Text], BeforeValidator(_listify), Field(min_length=1)]
When = Annotated[dt.datetime | None, BeforeValidator(_as_datetime)]
Problems = list[tuple[str, str]]  # (field, why)


class Selector(BaseModel):
    """Which items a rule is about. Every field given must match; a list matches any of its values.
    Category, brand and tag compare case-insensitively; ``items`` are exact item ids."""

    model_config = ConfigDict(extra="forbid")
    FIELDS: ClassVar[tuple[str, ...]] = ("category", "brand", "tag", "items", "source", "new_launch_days",
                                         "price_min", "price_max")

    category: Texts | None = None
    brand: Texts | None = None
    tag: Texts | None = None
    items: Texts | None = None
    source: Texts | None = None  # the candidate source that brought the item (not for filters)
    new_launch_days: float | None = Field(None, gt=0)  # launched within the last N days
    price_min: float | None = Field(None, ge=0)  # price_min <= price < price_max
    price_max: float | None = Field(None, gt=0)

    def given(self) -> list[str]:
        return [f for f in self.FIELDS if getattr(self, f) is not None]

    def selector_problems(self) -> Problems:
        if self.price_min is not None and self.price_max is not None and self.price_min >= self.price_max:
            return [("price_max", f"must be above price_min ({self.price_min:g})")]
        return []

    def describe(self) -> str:
        parts = [f"{f} {', '.join(getattr(self, f))}" for f in ("category", "brand", "tag", "items", "source")
                 if getattr(self, f)]
        if self.new_launch_days is not None:
            parts.append(f"launched in the last {self.new_launch_days:g} days")
        if self.price_min is not None or self.price_max is not None:
            lo = f"{self.price_min:g}" if self.price_min is not None else "0"
            hi = f"under {self.price_max:g}" if self.price_max is not None else "and up"
            parts.append(f"price {lo} {hi}" if self.price_min is not None else f"price {hi}")
        return " · ".join(parts) or "every item"


class Rule(BaseModel):
    """Fields every rule has: the merchandiser's ``name`` (shown in reasons and traces) and its type."""

    model_config = ConfigDict(extra="forbid")
    stage: ClassVar[str]
    needs_selector: ClassVar[bool] = False
    name: Text

    def problems(self) -> Problems:
        """Checks across fields (field, why); empty when the rule is consistent."""
        out: Problems = []
        if isinstance(self, Selector):
            out += self.selector_problems()
            if self.needs_selector and not self.given():
                out.append(("", f"say which items: give at least one of {', '.join(Selector.FIELDS)}"))
            if self.stage == "filter" and self.source is not None:
                out.append(("source", "filters run before the blend, when items have no source yet; "
                                      "use a quota or a boost to act on a source"))
        return out


# ---------------------------------------------------------------- hard filters (stage "filter")


class IncludeRule(Rule, Selector):
    """Only items matching the selector may be shown (e.g. a price range, a brand-only slot)."""

    stage: ClassVar[str] = "filter"
    needs_selector: ClassVar[bool] = True
    type: Literal["include"]


class ExcludeRule(Rule, Selector):
    """Items matching the selector are never shown (e.g. a category, a brand, a tag)."""

    stage: ClassVar[str] = "filter"
    needs_selector: ClassVar[bool] = True
    type: Literal["exclude"]


class TierOnlyRule(Rule, Selector):
    """Items matching the selector are shown only to members of ``tiers`` (e.g. gold-only items)."""

    stage: ClassVar[str] = "filter"
    needs_selector: ClassVar[bool] = True
    type: Literal["tier_only"]
    tiers: Texts


class MinStockRule(Rule):
    """At least ``min_stock`` units in stock (unknown stock counts as in stock)."""

    stage: ClassVar[str] = "filter"
    type: Literal["min_stock"]
    min_stock: int = Field(ge=1)


class BoughtRecentlyRule(Rule):
    """Not bought by this member within ``days`` (stricter than the slot's ``bought_recently_days``)."""

    stage: ClassVar[str] = "filter"
    type: Literal["bought_recently"]
    days: float = Field(gt=0)


class ShownTodayRule(Rule):
    """Not already shown to this member today, in any slot."""

    stage: ClassVar[str] = "filter"
    type: Literal["shown_today"]


class FrequencyCapRule(Rule):
    """At most ``max`` impressions per member over ``days`` days (1 = today), counted across slots."""

    stage: ClassVar[str] = "filter"
    type: Literal["frequency_cap"]
    max: int = Field(ge=1)
    days: int = Field(1, ge=1, le=30)


# ---------------------------------------------------------------- ordering and positions


class BoostRule(Rule, Selector):
    """Multiply matching items' scores by ``factor`` (> 1), then re-sort."""

    stage: ClassVar[str] = "boost"
    needs_selector: ClassVar[bool] = True
    type: Literal["boost"]
    factor: float = Field(gt=0)

    def problems(self) -> Problems:
        extra = [("factor", "a boost's factor must be above 1 (below 1: use type = \"bury\")")] \
            if self.factor <= 1 else []
        return super().problems() + extra


class BuryRule(Rule, Selector):
    """Multiply matching items' scores by ``factor`` (between 0 and 1), then re-sort."""

    stage: ClassVar[str] = "boost"
    needs_selector: ClassVar[bool] = True
    type: Literal["bury"]
    factor: float = Field(gt=0)

    def problems(self) -> Problems:
        extra = [("factor", "a bury's factor must be between 0 and 1 (above 1: use type = \"boost\")")] \
            if self.factor >= 1 else []
        return super().problems() + extra


class DiversityRule(Rule):
    """At most ``max`` items per category (or brand) in the top ``top`` positions."""

    stage: ClassVar[str] = "diversity"
    type: Literal["diversity"]
    by: Literal["category", "brand"]
    max: int = Field(ge=1)
    top: int = Field(ge=1)

    def problems(self) -> Problems:
        if self.max >= self.top:
            return [("max", f"must be below top ({self.top}), or the rule never acts")]
        return []


class QuotaRule(Rule, Selector):
    """At least ``min`` / at most ``max`` matching items in the top ``top`` positions."""

    stage: ClassVar[str] = "quota"
    needs_selector: ClassVar[bool] = True
    type: Literal["quota"]
    top: int = Field(ge=1)
    min: int | None = Field(None, ge=1)
    max: int | None = Field(None, ge=0)

    def problems(self) -> Problems:
        out = super().problems()
        if self.min is None and self.max is None:
            out.append(("min", "give min (at least) or max (at most)"))
        if self.min is not None and self.min > self.top:
            out.append(("min", f"cannot be above top ({self.top})"))
        if self.min is not None and self.max is not None and self.min > self.max:
            out.append(("max", f"must be at least min ({self.min})"))
        return out


class PinRule(Rule):
    """Item ``item`` at ``position`` (1 = first), between ``start`` and ``end`` when given."""

    stage: ClassVar[str] = "pin"
    type: Literal["pin"]
    item: Text
    position: int = Field(ge=1)
    start: When = None
    end: When = None

    def problems(self) -> Problems:
        if self.start is not None and self.end is not None and _aware(self.start) >= _aware(self.end):
            return [("end", "must be after start")]
        return []


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


RuleModel = (IncludeRule | ExcludeRule | TierOnlyRule | MinStockRule | BoughtRecentlyRule | ShownTodayRule
             | FrequencyCapRule | BoostRule | BuryRule | DiversityRule | QuotaRule | PinRule)
RULE_TYPES: dict[str, type[Rule]] = {
    get_args(c.model_fields["type"].annotation)[0]: c
    for c in (IncludeRule, ExcludeRule, TierOnlyRule, MinStockRule, BoughtRecentlyRule, ShownTodayRule,
              FrequencyCapRule, BoostRule, BuryRule, DiversityRule, QuotaRule, PinRule)}


class SlotTable(BaseModel):
    """One slot of the file. For a built-in slot every field is optional (the built-in recipe fills
    the gaps); a new slot needs ``sources``. ``rules`` are validated one by one by the loader."""

    model_config = ConfigDict(extra="forbid")
    about: StrictStr | None = None
    sources: list[Use] | None = Field(None, min_length=1)  # the source mix: weights are shares
    filters: list[Use] | None = None  # registered filters by name (code components)
    steps: list[Use] | None = None  # registered steps by name (code components)
    bought_recently_days: float | None = Field(None, ge=0)
    backfill: StrictStr | None = None  # a source name, or "none"
    pool: int | None = Field(None, ge=1, le=50)
    count: int | None = Field(None, ge=1, le=1000)  # items the page shows: positions are checked against it
    rerank: StrictBool | None = None  # the learned re-ranker after the boosts (None: the slot's default)
    rules: list[Any] = []


class ArmTable(BaseModel):
    """One arm of an experiment: its share of members, and what it changes in the slots."""

    model_config = ConfigDict(extra="forbid")
    name: Text
    weight: float = Field(ge=0)  # shares: an arm gets weight / (sum of weights) of the members
    slot: dict[str, Any] = {}  # any field a slot table may hold (validated as one), over the slot's own
    model: Text | None = None  # another published bundle version, served to this arm's members


class ExperimentTable(BaseModel):
    """An experiment: members split into arms by a stable hash of (salt, member_id)."""

    model_config = ConfigDict(extra="forbid")
    about: StrictStr = ""
    slots: Texts
    salt: Text
    start: When = None  # optional window, in the file's time zone when no offset is given
    end: When = None
    arms: list[Any] = Field(min_length=2)

    def problems(self) -> Problems:
        if self.start is not None and self.end is not None and _aware(self.start) >= _aware(self.end):
            return [("end", "must be after start")]
        return []


class FileTable(BaseModel):
    """The file's top level: ``rules`` here apply to every slot, before each slot's own."""

    model_config = ConfigDict(extra="forbid")
    about: StrictStr = ""
    timezone: StrictStr = "UTC"  # for pins' naive date-times and --at
    # a reload may drop every rule and file slot, or a slot that served lately (see rules/guard.py)
    allow_removing_slots: StrictBool = False
    rules: list[Any] = []
    slots: dict[str, Any] = {}
    experiments: dict[str, Any] = {}
