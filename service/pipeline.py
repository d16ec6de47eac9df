"""The slot pipeline engine: run a recipe's steps in order and trace what each one did.

    candidate sources -> filters -> blend -> backfill (when short) -> steps -> cut to count

The engine knows only four component shapes (the Protocols below); what a slot does is data in
its recipe (``service.slots``). Every step's name lands in the trace and in the served items'
reasons, so what a merchandiser reads is what the code calls it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from service.domain import Candidate, Context, OnlineState, ServedItem, SlotResult, Trace, TraceStep
from service.model import ServingModel
from service.profile import MemberProfile

if TYPE_CHECKING:
    from service.slots import SlotRecipe


@dataclass
class SlotQuery:
    """Everything a component may read for one slot of one request."""

    model: ServingModel
    profile: MemberProfile
    slot: str
    count: int
    context: Context = Context()
    exclude: set[int] = field(default_factory=set)  # items already placed on this page

    @property
    def now(self) -> float:
        return self.profile.now

    @property
    def state(self) -> OnlineState:
        return self.profile.state


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
    """Run ``recipe`` for one slot; the trace records every step, with its time in ms."""
    trace = Trace(recipe.name)
    ids = q.model.item_ids
    want = recipe.pool * q.count + len(q.exclude)

    pools: dict[str, list[Candidate]] = {}
    for use in recipe.sources:
        with _timed(trace, use.source.name, "source") as step:
            found = use.source.fetch(q, want)
            pools[use.source.name] = found
            step.added = ids[[c.item for c in found]].tolist()
    flat = apply_filters(recipe.filters, q, [c for pool in pools.values() for c in pool], trace)
    pools = {name: [c for c in flat if c.source == name] for name in pools}

    with _timed(trace, recipe.blend.name, "blend") as step:
        ranked = recipe.blend.blend(q, pools)
        step.note = recipe.blend.describe()

    if len(ranked) < q.count and recipe.backfill is not None:
        ranked = _backfill(recipe, q, ranked, trace)

    for s in recipe.steps:
        with _timed(trace, s.name, s.kind) as step:
            before = [c.item for c in ranked]
            ranked = s.apply(q, ranked)
            after = {c.item for c in ranked}
            step.removed = ids[[i for i in before if i not in after]].tolist()
            step.added = ids[sorted(after - set(before))].tolist()

    served = ranked[: q.count]
    trace.record(TraceStep("cut", "cut", removed=ids[[c.item for c in ranked[q.count:]]].tolist(),
                           note=f"served {len(served)} of {len(ranked)}"))
    items = [ServedItem(str(ids[c.item]), round(float(c.score), 6), c.source, tuple(c.reasons))
             for c in served]
    return SlotResult(recipe.name, items, trace)


def apply_filters(filters: Sequence[Filter], q: SlotQuery, candidates: list[Candidate],
                  trace: Trace) -> list[Candidate]:
    """Each filter sees all candidates at once (one vectorised call), removals go to the trace."""
    items = np.fromiter((c.item for c in candidates), dtype=np.int64, count=len(candidates))
    for f in filters:
        with _timed(trace, f.name, "filter") as step:
            keep = np.asarray(f.keep(q, items), dtype=bool) if len(items) else np.zeros(0, bool)
            step.removed = q.model.item_ids[np.unique(items[~keep])].tolist()
            candidates = [c for c, k in zip(candidates, keep.tolist(), strict=True) if k]
            items = items[keep]
    return candidates


def _backfill(recipe: SlotRecipe, q: SlotQuery, ranked: list[Candidate], trace: Trace) -> list[Candidate]:
    """Too few survived: top up from the recipe's backfill source, filtered like the rest."""
    assert recipe.backfill is not None
    have = {c.item for c in ranked}
    n = recipe.pool * q.count + len(q.exclude) + len(have)
    with _timed(trace, recipe.backfill.name, "backfill") as step:
        extra = [c for c in recipe.backfill.fetch(q, n) if c.item not in have]
        step.added = q.model.item_ids[[c.item for c in extra]].tolist()
    extra = apply_filters(recipe.filters, q, extra, trace)
    floor = min((c.score for c in ranked), default=1.0)
    for i, c in enumerate(extra):  # below everything blended, still in order
        c.score = floor * (1 - (i + 1) / (len(extra) + 1))
        c.because(recipe.backfill.name, "backfill", "filled a slot the recipe's sources left empty")
    return ranked + extra


class _timed:
    """Context manager: a TraceStep recorded with its duration."""

    def __init__(self, trace: Trace, name: str, kind: str) -> None:
        self.trace, self.step = trace, TraceStep(name, kind)

    def __enter__(self) -> TraceStep:
        self.t0 = time.perf_counter()
        return self.step

    def __exit__(self, *exc: object) -> None:
        self.step.ms = round((time.perf_counter() - self.t0) * 1000, 3)
        self.trace.record(self.step)
