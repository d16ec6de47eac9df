# ruff: noqa: E501
"""The slot pipeline engine: run a recipe's steps in order and trace what each one did.

    candidate sources -> filters -> blend -> backfill (when short) -> steps -> cut to count

The engine knows only four component shapes (the Protocols below); what a slot does is data in
its recipe (``tests.reference_engine.slots``). Every step's name lands in the trace and in the served items'
reasons, so what a merchandiser reads is what the code calls it. A component may say more in the
trace: ``describe()`` (what it is set to do) becomes the step's note, and while it runs it may call
``q.note(...)``, ``q.give_way(...)`` (a rule that could not hold, and why) and ``q.degrade(...)``
(a part it had to skip, such as the re-ranker: the response is marked degraded).
The trace is written only when the query asks for it (``SlotQuery.trace``; see ``tests.reference_engine.tracing``):
previews and checks do, served requests do not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from service.model import ServingModel
from tests.reference_engine.domain import Candidate, Context, OnlineState, ServedItem, SlotResult
from tests.reference_engine.profile import MemberProfile
from tests.reference_engine.tracing import NoTracer, Tracer

if TYPE_CHECKING:
    from tests.reference_engine.slots import SlotRecipe


@dataclass
class SlotQuery:
    """Everything a component may read for one slot of one request."""

    model: ServingModel
    profile: MemberProfile
    slot: str
    count: int
    context: Context = Context()
    exclude: set[int] = field(default_factory=set)  # items already placed on this page
    filters: tuple[Filter, ...] = ()  # the recipe's filters (set by run): a step adding an item checks them
    pinned: dict[int, int] = field(default_factory=dict)  # position (0-based) -> item, held by a pin
    notes: list[str] = field(default_factory=list)  # what the running component tells the trace
    yielded: list[str] = field(default_factory=list)  # rules that gave way while it ran
    degraded: list[str] = field(default_factory=list)  # parts the slot skipped ("rerank"): the answer says so
    served_hooks: list[Callable[[list[Candidate]], None]] = field(default_factory=list)  # see when_served
    trace: bool = True  # write the trace (preview, checks, tests); the served path turns it off

    @property
    def now(self) -> float:
        return self.profile.now

    @property
    def state(self) -> OnlineState:
        return self.profile.state

    def note(self, text: str) -> None:
        self.notes.append(text)

    def give_way(self, text: str) -> None:
        self.yielded.append(text)

    def when_served(self, hook: Callable[[list[Candidate]], None]) -> None:
        """Call ``hook(served)`` once the slot is cut to what it serves (e.g. to write reasons only for
        the items a member will see, not for every candidate)."""
        self.served_hooks.append(hook)

    def degrade(self, part: str) -> None:
        """The slot is served without ``part`` (e.g. "rerank"): the response is marked degraded."""
        if part not in self.degraded:
            self.degraded.append(part)

    def admissible(self, item: int) -> str | None:
        """None when ``item`` passes every filter of the recipe, else the name of the first that refuses."""
        one = np.array([item], dtype=np.int64)
        for f in self.filters:
            if not bool(np.asarray(f.keep(self, one), dtype=bool)[0]):
                return f.name
        return None


class CandidateSource(Protocol):
    """Brings up to ``n`` candidates, best first, each with its source name and a reason."""

    name: str

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]: ...


class Filter(Protocol):
    """Says which items may stay (vectorised: one boolean per item index)."""

    name: str

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray: ...


class Blender(Protocol):
    """Merges the filtered pools (source name -> candidates) into one ordered list with scores."""

    name: str

    def blend(self, q: SlotQuery, pools: dict[str, list[Candidate]]) -> list[Candidate]: ...

    def describe(self) -> str: ...


class Step(Protocol):
    """Works on the blended list: boosts, exposure rules, re-ranking. Returns the new order."""

    name: str
    kind: ClassVar[str]

    def apply(self, q: SlotQuery, candidates: list[Candidate]) -> list[Candidate]: ...


def run(recipe: SlotRecipe, q: SlotQuery) -> SlotResult:
    """Run ``recipe`` for one slot; with ``q.trace`` the trace records every step, with its time in ms."""
    tracer = Tracer(recipe.name, q.model.item_ids) if q.trace else NoTracer(recipe.name, q.model.item_ids)
    q.filters = recipe.filters
    want = recipe.pool * q.count + len(q.exclude)

    pools: dict[str, list[Candidate]] = {}
    for use in recipe.sources:
        with tracer.step(use.source.name, "source") as step:
            found = use.source.fetch(q, want)
            pools[use.source.name] = found
            step.brought(found)
    flat = apply_filters(recipe.filters, q, [c for pool in pools.values() for c in pool], tracer)
    pools = {name: [c for c in flat if c.source == name] for name in pools}

    with tracer.step(recipe.blend.name, "blend", component=recipe.blend):
        ranked = recipe.blend.blend(q, pools)

    if len(ranked) < q.count and recipe.backfill is not None:
        ranked = _backfill(recipe, q, ranked, tracer)

    for s in recipe.steps:
        with tracer.step(s.name, s.kind, q, s) as step:
            before = list(ranked)  # a step may reorder the list in place
            ranked = s.apply(q, ranked)
            step.reordered(before, ranked, q.count)

    served = ranked[: q.count]
    for hook in q.served_hooks:
        hook(served)
    tracer.cut(len(served), ranked)
    ids = q.model.item_ids
    items = [ServedItem(str(ids[c.item]), round(float(c.score), 6), c.source, tuple(c.reasons))
             for c in served]
    return SlotResult(recipe.name, items, tracer.trace, tuple(q.degraded))


def apply_filters(filters: Sequence[Filter], q: SlotQuery, candidates: list[Candidate],
                  tracer: Tracer | None = None) -> list[Candidate]:
    """Each filter sees all candidates at once (one vectorised call); removals go to the trace."""
    tracer = tracer or NoTracer("", q.model.item_ids)
    items = np.fromiter((c.item for c in candidates), dtype=np.int64, count=len(candidates))
    for f in filters:
        with tracer.step(f.name, "filter", q, f) as step:
            keep = np.asarray(f.keep(q, items), dtype=bool) if len(items) else np.zeros(0, bool)
            if keep.all():
                continue
            step.removed(items[~keep])
            candidates = [c for c, k in zip(candidates, keep.tolist(), strict=True) if k]
            items = items[keep]
    return candidates


def _backfill(recipe: SlotRecipe, q: SlotQuery, ranked: list[Candidate], tracer: Tracer) -> list[Candidate]:
    """Too few survived: top up from the recipe's backfill source, filtered like the rest."""
    assert recipe.backfill is not None
    have = {c.item for c in ranked}
    n = recipe.pool * q.count + len(q.exclude) + len(have)
    with tracer.step(recipe.backfill.name, "backfill") as step:
        extra = [c for c in recipe.backfill.fetch(q, n) if c.item not in have]
        step.brought(extra)
    extra = apply_filters(recipe.filters, q, extra, tracer)
    floor = min((c.score for c in ranked), default=1.0)
    for i, c in enumerate(extra):  # below everything blended, still in order
        c.score = floor * (1 - (i + 1) / (len(extra) + 1))
        c.because(recipe.backfill.name, "backfill", "filled a slot the recipe's sources left empty")
    return ranked + extra
