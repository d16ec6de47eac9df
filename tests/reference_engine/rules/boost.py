"""Boost and bury: multiply matching items' scores by a factor, then re-sort (stable).

The blended score falls linearly from 1 at the top of the candidate list to 0 at its bottom, so a
factor of 2 lifts an item from position 30 of 40 (score 0.25) to about position 20 (0.5). Boosted
and buried items say so in their reasons, with the rule's name. The factor is recorded on the
candidate (``Candidate.boost``), so a re-ranker later in the slot applies it again to its own order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery
from tests.reference_engine.rules.match import ItemMatcher


@dataclass
class Boost:
    name: str
    matcher: ItemMatcher
    factor: float
    kind: ClassVar[str] = "boost"

    def apply(self, q: SlotQuery, candidates: list[Candidate]) -> list[Candidate]:
        hits = self.matcher.candidates(q, candidates)
        verb = "boosted" if self.factor > 1 else "buried"
        for c, hit in zip(candidates, hits, strict=True):
            if hit:
                c.boost(self.factor)
                c.because(self.name, self.kind, f"{verb} ×{self.factor:g}: {self.matcher.about}")
        q.note(f"{sum(hits)} of {len(candidates)} candidates matched")
        return sorted(candidates, key=lambda c: -c.score)

    def describe(self) -> str:
        return f"{'boost' if self.factor > 1 else 'bury'} ×{self.factor:g}: {self.matcher.about}"
