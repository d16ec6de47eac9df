"""Quotas: at least ``min`` / at most ``max`` items matching a selector in the top K positions.

"At least": the best matching items from below move up to the bottom of the top K, displacing the
lowest non-matching ones (which move just below it). "At most": matching items beyond the first
``max`` move just below the top K, and the best non-matching items from below take their places.
Positions the slot's pins will take are left alone and pinned items count toward the quota. When
the candidates cannot meet the quota the rule gives way and the trace says how far it got.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery
from tests.reference_engine.rules.match import ItemMatcher
from tests.reference_engine.rules.positions import Held, Pins, reorder, window


@dataclass
class Quota:
    name: str
    matcher: ItemMatcher
    top: int
    min: int | None = None
    max: int | None = None
    pins: Sequence[Pins] = field(default_factory=tuple)
    kind: ClassVar[str] = "rule"

    def apply(self, q: SlotQuery, candidates: list[Candidate]) -> list[Candidate]:
        k = window(q, self.top, len(candidates))
        held = Held.split(q, candidates, self.pins, k)
        pinned_hits = sum(self.matcher.candidates(q, held.pinned))
        free = held.free
        if self.min is not None:
            free = self._at_least(q, free, held.slots, min(self.min, k) - pinned_hits, k)
        if self.max is not None:
            free = self._at_most(q, free, held.slots, self.max - pinned_hits, k)
        return candidates if free is held.free else reorder(candidates, held.rejoin(free))

    def _at_least(self, q: SlotQuery, cands: list[Candidate], k: int, need: int, shown: int
                  ) -> list[Candidate]:
        hit = self.matcher.candidates(q, cands)
        have = sum(hit[:k])
        if have >= need:
            return cands
        pull = [c for c, h in zip(cands[k:], hit[k:], strict=True) if h][:need - have]
        if have + len(pull) < need:
            q.give_way(f"'{self.name}' gave way: only {have + len(pull)} of the {need} more items with "
                       f"{self.matcher.about} it wants in the top {shown} are among the candidates")
        if not pull:
            return cands
        losers = [c for c, h in zip(reversed(cands[:k]), reversed(hit[:k]), strict=True) if not h][:len(pull)]
        out_ids, pulled = {id(c) for c in losers}, {id(c) for c in pull}
        kept = [c for c in cands[:k] if id(c) not in out_ids]
        pushed = [c for c in cands[:k] if id(c) in out_ids]
        for c in pull:
            c.because(self.name, self.kind, f"moved up: at least {self.min} with {self.matcher.about} "
                                            f"in the top {self.top}")
        for c in pushed:
            c.because(self.name, self.kind, "moved down to make room for its quota")
        return kept + pull + pushed + [c for c in cands[k:] if id(c) not in pulled]

    def _at_most(self, q: SlotQuery, cands: list[Candidate], k: int, budget: int, shown: int
                 ) -> list[Candidate]:
        hit = self.matcher.candidates(q, cands)
        excess = [c for c, h in zip(cands[:k], hit[:k], strict=True) if h][max(budget, 0):]
        if not excess:
            return cands
        fill = [c for c, h in zip(cands[k:], hit[k:], strict=True) if not h][:len(excess)]
        if len(fill) < len(excess):
            q.give_way(f"'{self.name}' gave way: too few other candidates to keep at most {self.max} "
                       f"with {self.matcher.about} in the top {shown}")
            excess = excess[len(excess) - len(fill):] if fill else []
        if not excess:
            return cands
        drop, taken = {id(c) for c in excess}, {id(c) for c in fill}
        for c in excess:
            c.because(self.name, self.kind, f"moved down: at most {self.max} with {self.matcher.about} "
                                            f"in the top {self.top}")
        for c in fill:
            c.because(self.name, self.kind, "moved up: took the place of an item over its quota")
        return [c for c in cands[:k] if id(c) not in drop] + fill + excess + \
            [c for c in cands[k:] if id(c) not in taken]

    def violation(self, q: SlotQuery, candidates: list[Candidate]) -> str | None:
        k = window(q, self.top, len(candidates))
        have = sum(self.matcher.candidates(q, candidates[:k]))
        if self.min is not None and have < min(self.min, k):
            return f"{have} with {self.matcher.about} in the top {k}, wants at least {min(self.min, k)}"
        if self.max is not None and have > self.max:
            return f"{have} with {self.matcher.about} in the top {k}, wants at most {self.max}"
        return None

    def describe(self) -> str:
        bounds = " and ".join(b for b in (f"at least {self.min}" if self.min is not None else "",
                                          f"at most {self.max}" if self.max is not None else "") if b)
        return f"{bounds} with {self.matcher.about} in the top {self.top}"
