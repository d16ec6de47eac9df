"""Diversity: at most N items per category (or brand) in the top K positions.

Greedy and order-preserving: walk the list, keep an item in the top K while its category has room,
defer it otherwise; deferred items follow the top K in their order. Items with an unknown category
('') are never limited. Positions the slot's pins will take are left alone, and pinned items count
toward their category. When too few categories are among the candidates to fill the top K, the
rule gives way (the top is filled from the deferred items) and the trace says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery
from tests.reference_engine.rules.positions import Held, Pins, reorder, window


@dataclass
class Diversity:
    name: str
    by: str  # category | brand
    max: int
    top: int
    pins: Sequence[Pins] = field(default_factory=tuple)
    kind: ClassVar[str] = "rule"

    def apply(self, q: SlotQuery, candidates: list[Candidate]) -> list[Candidate]:
        shown = window(q, self.top, len(candidates))
        held = Held.split(q, candidates, self.pins, shown)
        values = getattr(q.model.bundle.items, self.by)
        counts: Counter[str] = Counter(str(values[c.item]) for c in held.pinned)
        picked: list[Candidate] = []
        deferred: list[Candidate] = []
        free, k = held.free, held.slots
        rest_at = len(free)
        for pos, c in enumerate(free):
            if len(picked) == k:
                rest_at = pos
                break
            key = str(values[c.item])
            if key == "" or counts[key] < self.max:
                picked.append(c)
                counts[key] += 1
            else:
                deferred.append(c)
        if not deferred:
            return candidates
        if len(picked) < k:
            short = k - len(picked)
            picked += deferred[:short]
            deferred = deferred[short:]
            q.give_way(f"'{self.name}' gave way: too few {self.by} values among the candidates to keep "
                       f"{self.max} per {self.by} in the top {shown}")
        was = {id(c): p for p, c in enumerate(free)}
        for c in picked:
            if was[id(c)] >= k:
                c.because(self.name, self.kind, f"moved up: at most {self.max} per {self.by} "
                                                f"in the top {self.top}")
        for c in deferred:
            c.because(self.name, self.kind, f"moved down: {self.max} from {self.by} "
                                            f"'{values[c.item]}' already in the top {self.top}")
        return reorder(candidates, held.rejoin(picked + deferred + free[rest_at:]))

    def violation(self, q: SlotQuery, candidates: list[Candidate]) -> str | None:
        k = window(q, self.top, len(candidates))
        values = getattr(q.model.bundle.items, self.by)
        counts = Counter(str(values[c.item]) for c in candidates[:k])
        over = sorted(v for v, n in counts.items() if v and n > self.max)
        return f"{', '.join(over)} above {self.max} in the top {k}" if over else None

    def describe(self) -> str:
        return f"at most {self.max} per {self.by} in the top {self.top}"
