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

import numpy as np

from service.engine.match import ItemMatcher
from service.engine.query import Report, SlotQuery
from service.engine.slate import Slate
from service.positions import Held, Pins, window


@dataclass
class Quota:
    name: str
    matcher: ItemMatcher
    top: int
    min: int | None = None
    max: int | None = None
    pins: Sequence[Pins] = field(default_factory=tuple)
    kind: ClassVar[str] = "rule"

    def apply(self, q: SlotQuery, slate: Slate) -> Report | None:
        order = slate.order.tolist()
        k = window(q, self.top, len(order))
        held = Held.split(q, slate, order, self.pins, k)
        pinned_hits = int(self.matcher.items(q, np.array(held.pinned, dtype=np.int64)).sum()) \
            if self.matcher.sel.source is None else self._pinned_hits(q, slate, held)
        report = Report()
        free = held.free
        if self.min is not None:
            free = self._at_least(q, slate, free, held.slots, min(self.min, k) - pinned_hits, k, report)
        if self.max is not None:
            free = self._at_most(q, slate, free, held.slots, self.max - pinned_hits, k, report)
        if free is not held.free:
            slate.place(held.rejoin(free))
        return report

    def _pinned_hits(self, q: SlotQuery, slate: Slate, held: Held) -> int:
        """Pinned items matching a selector that names sources: only rows in the slate have a source."""
        rows = {slate.item[r]: r for _, r in held.where}
        in_slate = np.array([rows[i] for i in held.pinned if i in rows], dtype=np.int64)
        return int(self.matcher.rows(q, slate, in_slate).sum())

    def _at_least(self, q: SlotQuery, slate: Slate, cands: list[int], k: int, need: int, shown: int,
                  report: Report) -> list[int]:
        hit = self.matcher.rows(q, slate, np.array(cands, dtype=np.int64)).tolist()
        have = sum(hit[:k])
        if have >= need:
            return cands
        pull = [r for r, h in zip(cands[k:], hit[k:], strict=True) if h][:need - have]
        if have + len(pull) < need:
            report.give_way(f"'{self.name}' gave way: only {have + len(pull)} of the {need} more items with "
                            f"{self.matcher.about} it wants in the top {shown} are among the candidates")
        if not pull:
            return cands
        lowest = [r for r, h in zip(reversed(cands[:k]), reversed(hit[:k]), strict=True) if not h]
        losers = set(lowest[:len(pull)])
        pulled = set(pull)
        kept = [r for r in cands[:k] if r not in losers]
        pushed = [r for r in cands[:k] if r in losers]
        slate.because(pull, self.name, self.kind,
                      f"moved up: at least {self.min} with {self.matcher.about} in the top {self.top}")
        slate.because(pushed, self.name, self.kind, "moved down to make room for its quota")
        return kept + pull + pushed + [r for r in cands[k:] if r not in pulled]

    def _at_most(self, q: SlotQuery, slate: Slate, cands: list[int], k: int, budget: int, shown: int,
                 report: Report) -> list[int]:
        hit = self.matcher.rows(q, slate, np.array(cands, dtype=np.int64)).tolist()
        excess = [r for r, h in zip(cands[:k], hit[:k], strict=True) if h][max(budget, 0):]
        if not excess:
            return cands
        fill = [r for r, h in zip(cands[k:], hit[k:], strict=True) if not h][:len(excess)]
        if len(fill) < len(excess):
            report.give_way(f"'{self.name}' gave way: too few other candidates to keep at most {self.max} "
                            f"with {self.matcher.about} in the top {shown}")
            excess = excess[len(excess) - len(fill):] if fill else []
        if not excess:
            return cands
        drop, taken = set(excess), set(fill)
        slate.because(excess, self.name, self.kind,
                      f"moved down: at most {self.max} with {self.matcher.about} in the top {self.top}")
        slate.because(fill, self.name, self.kind, "moved up: took the place of an item over its quota")
        return [r for r in cands[:k] if r not in drop] + fill + excess + \
            [r for r in cands[k:] if r not in taken]

    def violation(self, q: SlotQuery, slate: Slate) -> str | None:
        k = window(q, self.top, len(slate))
        have = int(self.matcher.rows(q, slate, slate.order[:k]).sum())
        if self.min is not None and have < min(self.min, k):
            return f"{have} with {self.matcher.about} in the top {k}, wants at least {min(self.min, k)}"
        if self.max is not None and have > self.max:
            return f"{have} with {self.matcher.about} in the top {k}, wants at most {self.max}"
        return None

    def describe(self) -> str:
        bounds = " and ".join(b for b in (f"at least {self.min}" if self.min is not None else "",
                                          f"at most {self.max}" if self.max is not None else "") if b)
        return f"{bounds} with {self.matcher.about} in the top {self.top}"
