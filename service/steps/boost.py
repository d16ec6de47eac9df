"""Boost and bury: multiply matching items' scores by a factor, then re-sort (stable).

The blended score falls linearly from 1 at the top of the candidate list to 0 at its bottom, so a
factor of 2 lifts an item from position 30 of 40 (score 0.25) to about position 20 (0.5). Boosted
and buried items say so in their reasons, with the rule's name. The factor is recorded in the
slate's ``scale`` column, so a re-ranker later in the slot applies it again to its own order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from service.engine.match import ItemMatcher
from service.engine.query import Report, SlotQuery
from service.engine.slate import Slate


@dataclass
class Boost:
    name: str
    matcher: ItemMatcher
    factor: float
    kind: ClassVar[str] = "boost"

    def apply(self, q: SlotQuery, slate: Slate) -> Report | None:
        hits = self.matcher.rows(q, slate, slate.order)
        rows = slate.order[hits]
        for column in (slate.score, slate.scale, slate.shift):
            column[rows] *= self.factor
        verb = "boosted" if self.factor > 1 else "buried"
        slate.because(rows, self.name, self.kind, f"{verb} ×{self.factor:g}: {self.matcher.about}")
        slate.sort()
        return Report().note(f"{len(rows)} of {len(slate)} candidates matched")

    def describe(self) -> str:
        return f"{'boost' if self.factor > 1 else 'bury'} ×{self.factor:g}: {self.matcher.about}"
