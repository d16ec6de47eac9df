"""Helpers shared by the position rules (diversity, quota, pin).

After a position rule reorders a slot, scores belong to positions: the item now at position p gets
the score the list had at p, so served scores still fall from the top and a pinned item does not
carry a made-up number.

Pins run last and win, but diversity and quotas plan around them: ``Held`` is what the slot's
active pins will take (their items and positions), so a quota for "2 new launches in the top 6"
with a pin at position 1 arranges the other 5 positions, and counts the pinned item if it matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery


class Pins(Protocol):
    position: int

    def resolve(self, q: SlotQuery, candidates: list[Candidate]) -> tuple[Candidate | None, str | None]: ...


def reorder(old: list[Candidate], new: list[Candidate]) -> list[Candidate]:
    scores = sorted((c.score for c in old), reverse=True)
    floor = scores[-1] if scores else 0.0
    scores += [floor] * (len(new) - len(scores))  # an item a pin added: the last score repeats
    for c, s in zip(new, scores, strict=False):
        c.score = s
    return new


def window(q: SlotQuery, top: int, n: int) -> int:
    """Positions a rule about "the top K" looks at: K, but no more than the request asked for."""
    return max(0, min(top, q.count, n))


@dataclass
class Held:
    """The candidates the slot's pins will place, split from the ones a position rule may arrange."""

    free: list[Candidate]  # candidates no pin holds, in order
    pinned: list[Candidate]  # candidates pins will place within the window
    slots: int  # positions of the window left to the free candidates
    _where: list[tuple[int, Candidate]]  # pinned candidates already in the list, by index

    @classmethod
    def split(cls, q: SlotQuery, candidates: list[Candidate], pins: Sequence[Pins], k: int) -> Held:
        taken: dict[int, Candidate] = {}
        for p in sorted(pins, key=lambda p: p.position):
            c, _ = p.resolve(q, candidates)
            if c is not None and p.position - 1 not in taken and all(c is not t for t in taken.values()):
                taken[p.position - 1] = c
        held = {id(c) for c in taken.values()}
        in_window = [c for pos, c in taken.items() if pos < k]
        where = [(i, c) for i, c in enumerate(candidates) if id(c) in held]
        return cls([c for c in candidates if id(c) not in held], in_window, max(0, k - len(in_window)), where)

    def rejoin(self, free: list[Candidate]) -> list[Candidate]:
        """The arranged free candidates with the pinned ones back where they were (the pins move them)."""
        out = list(free)
        for i, c in self._where:
            out.insert(min(i, len(out)), c)
        return out
