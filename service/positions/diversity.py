"""Diversity: at most N items per category (or brand) in the top K positions.

Greedy and order-preserving: walk the order, keep an item in the top K while its category has
room, defer it otherwise; deferred items follow the top K in their order. Items with an unknown
category ('') are never limited. Positions the slot's pins will take are left alone, and pinned
items count toward their category. When too few categories are among the candidates to fill the
top K, the rule gives way (the top is filled from the deferred items) and the trace says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from service.engine.query import Report, SlotQuery
from service.engine.slate import Slate
from service.positions import Held, Pins, window


@dataclass
class Diversity:
    name: str
    by: str  # category | brand
    max: int
    top: int
    pins: Sequence[Pins] = field(default_factory=tuple)
    kind: ClassVar[str] = "rule"

    def apply(self, q: SlotQuery, slate: Slate) -> Report | None:
        order = slate.order.tolist()
        shown = window(q, self.top, len(order))
        held = Held.split(q, slate, order, self.pins, shown)
        values = getattr(q.model.bundle.items, self.by)
        counts: Counter[str] = Counter(str(values[i]) for i in held.pinned)
        picked: list[int] = []
        deferred: list[int] = []
        free, k = held.free, held.slots
        rest_at = len(free)
        for pos, row in enumerate(free):
            if len(picked) == k:
                rest_at = pos
                break
            key = str(values[slate.item[row]])
            if key == "" or counts[key] < self.max:
                picked.append(row)
                counts[key] += 1
            else:
                deferred.append(row)
        if not deferred:
            return None
        report = Report()
        if len(picked) < k:
            short = k - len(picked)
            picked += deferred[:short]
            deferred = deferred[short:]
            report.give_way(f"'{self.name}' gave way: too few {self.by} values among the candidates to keep "
                            f"{self.max} per {self.by} in the top {shown}")
        was = {r: p for p, r in enumerate(free)}
        slate.because([r for r in picked if was[r] >= k], self.name, self.kind,
                      f"moved up: at most {self.max} per {self.by} in the top {self.top}")
        item = slate.item
        slate.because(deferred, self.name, self.kind,
                      lambda row: f"moved down: {self.max} from {self.by} '{values[item[row]]}' already "
                                  f"in the top {self.top}")
        slate.place(held.rejoin(picked + deferred + free[rest_at:]))
        return report

    def violation(self, q: SlotQuery, slate: Slate) -> str | None:
        k = window(q, self.top, len(slate))
        values = getattr(q.model.bundle.items, self.by)
        counts = Counter(str(values[i]) for i in slate.items[:k].tolist())
        over = sorted(v for v, n in counts.items() if v and n > self.max)
        return f"{', '.join(over)} above {self.max} in the top {k}" if over else None

    def describe(self) -> str:
        return f"at most {self.max} per {self.by} in the top {self.top}"
