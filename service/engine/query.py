"""What a component may read for one slot (``SlotQuery``, read-only), what it reports back
(``Report``), and the five component shapes the engine knows.

A component never writes onto the query: what it has to say (notes for the trace, rules that gave
way, parts it had to skip such as the re-ranker) comes back in its ``Report``; the engine puts it in
the trace and the result. Every component's ``name`` lands in the trace and in the served items'
reasons, so what a merchandiser reads is what the code calls it; ``describe()`` (when a component
has it) is the note the trace starts its step with.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

from service.domain import Context, OnlineState
from service.engine.slate import Found, Slate
from service.model import ServingModel
from service.profile import MemberProfile


@dataclass(frozen=True)
class SlotQuery:
    """Everything a component may read for one slot of one request."""

    model: ServingModel
    profile: MemberProfile
    slot: str
    count: int
    context: Context = Context()
    exclude: Set[int] = frozenset()  # items already placed on this page
    filters: tuple[Filter, ...] = ()  # the recipe's filters (set by run): a rule adding an item checks them
    trace: bool = True  # write the trace (preview, checks, tests); the served path turns it off

    @property
    def now(self) -> float:
        return self.profile.now

    @property
    def state(self) -> OnlineState:
        return self.profile.state

    def admissible(self, item: int) -> str | None:
        """None when ``item`` passes every filter of the recipe, else the name of the first that refuses."""
        one = np.array([item], dtype=np.int64)
        for f in self.filters:
            if not bool(np.asarray(f.keep(self, one), dtype=bool)[0]):
                return f.name
        return None


@dataclass
class Report:
    """What a step tells the trace and the answer."""

    notes: list[str] = field(default_factory=list)
    gave_way: list[str] = field(default_factory=list)  # rules that could not hold, and to what they yielded
    degraded: list[str] = field(default_factory=list)  # parts the slot skipped ("rerank"): the answer says so

    def note(self, text: str) -> Report:
        self.notes.append(text)
        return self

    def give_way(self, text: str) -> Report:
        self.gave_way.append(text)
        return self

    def degrade(self, part: str) -> Report:
        if part not in self.degraded:
            self.degraded.append(part)
        return self


class CandidateSource(Protocol):
    """Brings up to ``n`` items, best first, with their scores and how to explain each."""

    name: str

    def fetch(self, q: SlotQuery, n: int) -> Found: ...


class Filter(Protocol):
    """Says which items may stay (vectorised: one boolean per item index)."""

    name: str

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray: ...


class Blender(Protocol):
    """Merges the sources' filtered rows (one row array per source, best first) into one order (its
    first ``limit`` only, when nothing after it reorders the slot; the scores stay the same)."""

    name: str

    def blend(self, q: SlotQuery, slate: Slate, pools: list[np.ndarray],
              limit: int | None = None) -> None: ...

    def describe(self) -> str: ...


class Step(Protocol):
    """Works on the blended slate: boosts, re-ranking, position rules. Changes its order and scores."""

    name: str
    kind: ClassVar[str]

    def apply(self, q: SlotQuery, slate: Slate) -> Report | None: ...
