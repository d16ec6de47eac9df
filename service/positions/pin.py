"""Pins: an item at a fixed position, between a start and an end time (when given).

Pins run last, so merchandisers keep control of the positions they pin, but a pinned item still
has to pass every hard filter of the slot (stock, shelf, tier, frequency cap, page dedup, ...): a
pin on an item the member may not see gives way, and the trace names the filter it gave way to.
Several pins in one slot hold their positions together (the slate's ``held`` positions), whatever their order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from service.engine.query import Report, SlotQuery
from service.engine.slate import Slate
from service.positions import Placed


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

    def resolve(self, q: SlotQuery, slate: Slate, order: list[int]) -> tuple[Placed | None, str | None]:
        """What this pin places now (a row of the slate, or an item that passed every filter), or
        None and why not. Diversity and quotas ask too, to plan around the pin."""
        if not self.active(q.now):
            return None, None
        item = q.model.item_index.get(self.item)
        if item is None:
            return None, f"'{self.name}' gave way: item {self.item} is not in model {q.model.version}"
        at = np.flatnonzero(slate.item[np.asarray(order, dtype=np.int64)] == item)
        if len(at):
            return Placed(item, order[int(at[0])]), None
        refused = q.admissible(item)
        if refused is not None:
            return None, f"'{self.name}' gave way to {refused}: item {self.item} may not be shown here now"
        return Placed(item, None), None

    def apply(self, q: SlotQuery, slate: Slate) -> Report | None:
        order = slate.order.tolist()
        found, why = self.resolve(q, slate, order)
        if found is None:
            return Report().note("not active at this time") if why is None else Report().give_way(why)
        item, pos = found.item, self.position - 1
        if slate.held.get(pos, item) != item:
            return Report().give_way(f"'{self.name}' gave way: position {self.position} is held by "
                                     "another pin")
        row = found.row
        if row is None:  # not among the candidates: the pin adds it
            row = int(slate.add(np.array([item]), slate.origin("pin", None), 0.0)[0])
        slate.held = {p: i for p, i in slate.held.items() if i != item} | {pos: item}
        by_item = {int(slate.item[r]): r for r in order} | {item: row}
        held = set(slate.held.values())
        out = [r for r in order if int(slate.item[r]) not in held]
        for p, i in sorted(slate.held.items()):
            out.insert(min(p, len(out)), by_item[i])
        report = Report()
        if self.position > len(out):
            report.note(f"only {len(out)} candidates: placed last")
        if self.position > q.count:
            report.note(f"position {self.position} is beyond the {q.count} items asked for: not seen")
        slate.because([row], self.name, self.kind, f"pinned at position {self.position} {self.when}".strip())
        slate.place(out)
        return report

    def describe(self) -> str:
        return f"{self.item} at position {self.position} {self.when}".strip()
