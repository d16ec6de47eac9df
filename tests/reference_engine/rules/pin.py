"""Pins: an item at a fixed position, between a start and an end time (when given).

Pins run last, so merchandisers keep control of the positions they pin, but a pinned item still
has to pass every hard filter of the slot (stock, shelf, tier, frequency cap, page dedup, ...): a
pin on an item the member may not see gives way, and the trace names the filter it gave way to.
Several pins in one slot hold their positions together (``q.pinned``), whatever their order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery
from tests.reference_engine.rules.positions import reorder


@dataclass
class Pin:
    name: str
    item: str
    position: int  # 1 = first
    start: float | None = None  # seconds since the epoch
    end: float | None = None
    when: str = ""  # the date range in the file's words, for reasons and the trace
    kind: ClassVar[str] = "rule"

    def active(self, now: float) -> bool:
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)

    def resolve(self, q: SlotQuery, candidates: list[Candidate]) -> tuple[Candidate | None, str | None]:
        """The candidate this pin places now (from the list, or a new one that passed every filter),
        or None and why not. Diversity and quotas ask too, to plan around the pin."""
        if not self.active(q.now):
            return None, None
        item = q.model.item_index.get(self.item)
        if item is None:
            return None, f"'{self.name}' gave way: item {self.item} is not in model {q.model.version}"
        found = next((c for c in candidates if c.item == item), None)
        if found is not None:
            return found, None
        refused = q.admissible(item)
        if refused is not None:
            return None, f"'{self.name}' gave way to {refused}: item {self.item} may not be shown here now"
        return Candidate(item, 0.0, "pin"), None

    def apply(self, q: SlotQuery, candidates: list[Candidate]) -> list[Candidate]:
        found, why = self.resolve(q, candidates)
        if found is None:
            if why is None:
                q.note("not active at this time")
            else:
                q.give_way(why)
            return candidates
        item, pos = found.item, self.position - 1
        if q.pinned.get(pos, item) != item:
            q.give_way(f"'{self.name}' gave way: position {self.position} is held by another pin")
            return candidates
        q.pinned = {p: i for p, i in q.pinned.items() if i != item} | {pos: item}
        by_item = {c.item: c for c in candidates} | {item: found}
        out = [c for c in candidates if c.item not in q.pinned.values()]
        for p, i in sorted(q.pinned.items()):
            out.insert(min(p, len(out)), by_item[i])
        if self.position > len(out):
            q.note(f"only {len(out)} candidates: placed last")
        if self.position > q.count:
            q.note(f"position {self.position} is beyond the {q.count} items asked for: not seen")
        found.because(self.name, self.kind, f"pinned at position {self.position} {self.when}".strip())
        return reorder(candidates, out)

    def describe(self) -> str:
        return f"{self.item} at position {self.position} {self.when}".strip()
