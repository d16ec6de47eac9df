"""Slot recipes: which sources, filters, blend and steps a slot runs, as data.

A recipe is built from a plain spec (a dict, as a rules file would hold it) by looking components up
by name, so a new slot needs configuration only::

    "check_in": {
        "about": "personal picks with some new launches mixed in",
        "sources": [{"use": "als", "weight": 0.75}, {"use": "new_launches", "weight": 0.25, "days": 30}],
        "bought_recently_days": 14,
    }

Every slot gets the filters no slot can do without (ALWAYS_FILTERS) before its own ones; the
blend is a weighted interleave of the sources; ``steps`` (boosts, exposure rules, re-ranking) run on
the blended list; ``backfill`` tops up a slot its sources left short. The merchandisers' rules file
(``service.rules``) builds on these specs: it adds named filters and rule steps in a fixed order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.blend import Interleave
from service.engine.query import Blender, CandidateSource, Filter, Step
from service.errors import MallrecError
from service.experiments import SlotArm, SlotExperiment
from service.filters.bought_recently import NotBoughtRecently

#: Filters every slot runs first, whatever its recipe says.
ALWAYS_FILTERS = ("in_stock", "on_shelf", "bought_recently", "just_ordered", "page_dedup")

#: The learned re-ranker where the bundle has one (a bundle trained without one serves the blend as
#: is, not degraded): on for the personal slots, whose candidates are like the "for you" pools it is
#: trained on; off for delivery, whose order context the model never sees. A rules file's
#: ``rerank = true | false`` overrides it per slot.
RERANK_IF_AVAILABLE: dict[str, Any] = {"use": "rerank", "if_available": True}

DEFAULT_SLOTS: dict[str, dict[str, Any]] = {
    "search_box": {
        "about": "what you may be looking for (the typed text's brand/category/tags first) + trending",
        "sources": [{"use": "query_match", "weight": 0.5}, {"use": "als", "weight": 0.3},
                    {"use": "trending", "weight": 0.2}],
        "steps": ["query_first", RERANK_IF_AVAILABLE],
        "bought_recently_days": 7,
    },
    # "liked" (RP3beta: because you liked X) beside ALS: the item model alone out-scores default ALS
    # offline and their blend scores best (docs/benchmarks.md); a fifth of the slot, so taste still
    # leads and a bundle without the item model (the source then brings nothing) loses little
    "check_in": {
        "about": "personal picks, some because you liked an item, with some new launches mixed in",
        "sources": [{"use": "als", "weight": 0.55}, {"use": "liked", "weight": 0.2},
                    {"use": "new_launches", "weight": 0.25, "days": 30}],
        "steps": [RERANK_IF_AVAILABLE],
        "bought_recently_days": 14,
    },
    "delivery": {
        "about": "goes with the delivered order, plus repeat purchases that are due",
        "sources": [{"use": "similar_order", "weight": 0.45}, {"use": "repeat_purchase", "weight": 0.35},
                    {"use": "category_popular", "weight": 0.2}],
        "bought_recently_days": 7,
    },
}


class RecipeError(MallrecError):
    """A slot spec that cannot be built; the message names the slot and the entry, ``why`` says what
    is wrong with the entry alone (the rules file checker places it on the entry's line)."""

    def __init__(self, message: str, why: str | None = None) -> None:
        super().__init__(message)
        self.why = why or message


class Use(BaseModel):
    """One component in a spec: its registered name, a blend weight (sources) and its parameters."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    use: str
    weight: float = Field(1.0, gt=0)
    alias: str | None = Field(None, alias="as")  # a second use of one source under another name

    @model_validator(mode="before")
    @classmethod
    def _name_only(cls, value: Any) -> Any:
        return {"use": value} if isinstance(value, str) else value

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SlotSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    about: str = ""
    sources: list[Use] = Field(min_length=1)
    filters: list[Use] = []
    steps: list[Use] = []
    bought_recently_days: float = Field(14.0, ge=0)
    backfill: str | None = "popular"  # a source name; None: serve what the sources found
    pool: int = Field(4, ge=1, le=50)  # candidates per source = pool x count (+ page exclusions)


@dataclass(frozen=True)
class SourceUse:
    source: CandidateSource
    weight: float


@dataclass(frozen=True)
class SlotRecipe:
    """A slot as the engine runs it (``service.engine.run``)."""

    name: str
    sources: tuple[SourceUse, ...]
    filters: tuple[Filter, ...]
    blend: Blender
    steps: tuple[Step, ...] = ()
    backfill: CandidateSource | None = None
    pool: int = 4
    about: str = ""

    def outline(self) -> list[str]:
        """The recipe as a table of contents (for `rules preview`, logs and --help)."""
        return [f"sources:  {self.blend.describe()}",
                f"filters:  {', '.join(f.name for f in self.filters)}",
                f"steps:    {', '.join(s.name for s in self.steps) or '-'}",
                f"backfill: {self.backfill.name if self.backfill else '-'}"]


@dataclass(frozen=True)
class Chosen:
    """The recipe a request runs for one slot, and the experiment arm that chose it."""

    recipe: SlotRecipe
    experiment: str = ""
    arm: str = ""
    model: str | None = None  # the arm's bundle version; None: the live model
    count: int | None = None  # the arm's own count: at most this many items
    source: SlotExperiment | None = None

    @property
    def note(self) -> str:
        """For the trace (worked out only when a trace asks for it)."""
        if self.source is None:
            return ""
        arm = next(a for a in self.source.arms if a.name == self.arm)
        return (f"experiment {self.experiment} (salt {self.source.salt!r}): arm {self.arm}, "
                f"{arm.weight / self.source.bounds[-1]:.0%} of members"
                + (f", model {self.model}" if self.model else ""))


@dataclass(frozen=True)
class SlotRegistry:
    """Slot name -> recipe; swapped whole when configuration changes."""

    recipes: dict[str, SlotRecipe] = field(default_factory=dict)
    version: str = "builtin"  # the rules file's version once rules configure slots
    impression_days: int = 1  # days of impressions a request reads (the widest frequency cap)
    #: slot -> its experiments (their time windows never overlap: the rules check refuses that)
    experiments: dict[str, tuple[SlotExperiment, ...]] = field(default_factory=dict)

    def get(self, slot: str) -> SlotRecipe | None:
        return self.recipes.get(slot)

    def arm_for(self, slot: str, member_id: str, now: float) -> tuple[SlotExperiment, SlotArm] | None:
        """The experiment running on ``slot`` at ``now`` and the member's arm in it, if any."""
        for exp in self.experiments.get(slot, ()):
            if exp.active(now):
                return exp, exp.assign(member_id)
        return None

    def choose(self, slot: str, member_id: str, now: float) -> Chosen | None:
        """What serves ``slot`` to this member now: the slot's recipe, or its experiment arm's."""
        recipe = self.get(slot)
        if recipe is None:
            return None
        found = self.arm_for(slot, member_id, now)
        if found is None:
            return Chosen(recipe)
        exp, arm = found
        return Chosen(arm.recipe, exp.name, arm.name, arm.model, arm.count, exp)

    def model_versions(self) -> set[str]:
        """Bundle versions the experiments' arms serve beside the live model."""
        return {a.model for exps in self.experiments.values() for e in exps for a in e.arms if a.model}

    def names(self) -> list[str]:
        return sorted(self.recipes)


def components() -> dict[str, dict[str, Callable[..., Any]]]:
    """Every component recipes can name, by kind (source | filter | step): registered in one place,
    the composition root ``service.components``."""
    from service.components import registry

    return registry()


def make_component(kind: str, use: Use, slot: str, where: str) -> Any:
    """One component of a spec, built by name; RecipeError names the slot and the entry."""
    table = components()[kind]
    if use.use not in table:
        why = f"unknown {kind} {use.use!r} (known: {', '.join(sorted(table))})"
        raise RecipeError(f"slot {slot!r}: {where}: {why}", why)
    params = use.params | ({"name": use.alias} if use.alias else {})
    try:
        return table[use.use](**params)
    except TypeError as e:
        why = f"bad parameters for {use.use!r} ({e})"
        raise RecipeError(f"slot {slot!r}: {where}: {why}", why) from e


def build_recipe(name: str, spec: SlotSpec | dict[str, Any]) -> SlotRecipe:
    """Spec -> recipe, with errors that name the slot and the entry."""
    try:
        spec = spec if isinstance(spec, SlotSpec) else SlotSpec.model_validate(spec)
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise RecipeError(f"slot {name!r}: {where}") from e
    sources = tuple(SourceUse(make_component("source", u, name, f"sources[{i}]"), u.weight)
                    for i, u in enumerate(spec.sources))
    names = [s.source.name for s in sources]
    if len(set(names)) != len(names):
        raise RecipeError(f"slot {name!r}: a source is used twice; give the second one 'as: NAME'")
    always = [NotBoughtRecently(days=spec.bought_recently_days) if f == "bought_recently"
              else components()["filter"][f]() for f in ALWAYS_FILTERS]
    extra = [make_component("filter", u, name, f"filters[{i}]") for i, u in enumerate(spec.filters)
             if u.use not in ALWAYS_FILTERS]
    steps = tuple(make_component("step", u, name, f"steps[{i}]") for i, u in enumerate(spec.steps))
    backfill = make_component("source", Use(use=spec.backfill), name, "backfill") if spec.backfill else None
    return SlotRecipe(name=name, sources=sources, filters=(*always, *extra),
                      blend=Interleave({s.source.name: s.weight for s in sources}),
                      steps=steps, backfill=backfill, pool=spec.pool, about=spec.about)


def build_registry(specs: Mapping[str, dict[str, Any] | SlotSpec], version: str = "builtin") -> SlotRegistry:
    return SlotRegistry({name: build_recipe(name, spec) for name, spec in specs.items()}, version)


def default_registry() -> SlotRegistry:
    """The built-in slots: search_box, check_in, delivery."""
    return build_registry(DEFAULT_SLOTS)
