"""Position rules: diversity, quotas and pins, the rules that place items at positions.

They run last (pins after quotas after diversity) and look at the top K positions of the slate's
order only. A rule's new order goes through ``Slate.place``: scores belong to positions, so served
scores still fall from the top and a pinned item does not carry a made-up number.

Pins run last and win, but diversity and quotas plan around them: ``Held`` is what the slot's
active pins will take (their items and positions), so a quota for "2 new launches in the top 6"
with a pin at position 1 arranges the other 5 positions, and counts the pinned item if it matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from service.engine.query import SlotQuery
from service.engine.slate import Slate


class Placed(NamedTuple):
    """The item a pin places, and its slate row (None: not among the candidates, the pin adds it)."""

    item: int
    row: int | None


class Pins(Protocol):
    position: int

    def resolve(self, q: SlotQuery, slate: Slate, order: list[int]) -> tuple[Placed | None, str | None]: ...


def window(q: SlotQuery, top: int, n: int) -> int:
    """Positions a rule about "the top K" looks at: K, but no more than the request asked for."""
    return max(0, min(top, q.count, n))


@dataclass
class Held:
    """The rows the slot's pins will place, split from the ones a position rule may arrange."""

    free: list[int]  # rows no pin holds, in order
    pinned: list[int]  # items pins will place within the window
    slots: int  # positions of the window left to the free rows
    where: list[tuple[int, int]]  # (index in the order, row) of pinned rows already in the slate

    @classmethod
    def split(cls, q: SlotQuery, slate: Slate, order: list[int], pins: Sequence[Pins], k: int) -> Held:
        taken: dict[int, Placed] = {}
        for p in sorted(pins, key=lambda p: p.position):
            found, _ = p.resolve(q, slate, order)
            if found is not None and p.position - 1 not in taken and all(found != t for t in taken.values()):
                taken[p.position - 1] = found
        rows = {t.row for t in taken.values() if t.row is not None}
        in_window = [t.item for pos, t in taken.items() if pos < k]
        if not rows:
            return cls(order, in_window, max(0, k - len(in_window)), [])
        where = [(i, r) for i, r in enumerate(order) if r in rows]
        return cls([r for r in order if r not in rows], in_window, max(0, k - len(in_window)), where)

    def rejoin(self, free: list[int]) -> list[int]:
        """The arranged free rows with the pinned ones back where they were (the pins move them)."""
        out = list(free)
        for i, r in self.where:
            out.insert(min(i, len(out)), r)
        return out
