"""Blending: merge the filtered pools of a slot's sources into one ordered list.

``Interleave`` is a smooth weighted round-robin: a source with weight 0.75 fills about three of
every four positions, spread evenly, so "personal with some new launches mixed in" is literally the
recipe's weights. An item brought by two sources keeps its first place and gains an "also" reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery


@dataclass
class Interleave:
    weights: dict[str, float] = field(default_factory=dict)
    name: str = "interleave"

    def describe(self) -> str:
        total = sum(self.weights.values()) or 1.0
        return " · ".join(f"{n} {w / total:.0%}" for n, w in self.weights.items())

    def blend(self, q: SlotQuery, pools: dict[str, list[Candidate]]) -> list[Candidate]:
        names = [n for n, p in pools.items() if p and self.weights.get(n, 0) > 0]
        weight = [self.weights[n] for n in names]
        pending = [pools[n] for n in names]
        at = [0] * len(names)  # next unread candidate of each pool
        credit = [0.0] * len(names)
        placed: dict[int, Candidate] = {}
        out: list[Candidate] = []
        total = sum(weight)  # changes only when a pool runs out
        while len(names) > 1:
            pick = 0
            for k in range(len(names)):  # ties go to the recipe's first source
                credit[k] += weight[k]
                if credit[k] > credit[pick]:
                    pick = k
            credit[pick] -= total
            pool, i = pending[pick], at[pick]
            while i < len(pool) and pool[i].item in placed:
                placed[pool[i].item].because(self.name, "blend", f"also from {names[pick]}")
                i += 1
            if i < len(pool):
                placed[pool[i].item] = pool[i]
                out.append(pool[i])
                i += 1
            at[pick] = i
            if i == len(pool):
                for column in (names, weight, pending, at, credit):
                    del column[pick]
                total = sum(weight)
        if names:  # one pool left: it takes every remaining position, in its order
            also = f"also from {names[0]}"
            for c in pending[0][at[0]:]:
                first = placed.get(c.item)
                if first is None:
                    placed[c.item] = c
                    out.append(c)
                else:
                    first.because(self.name, "blend", also)
        n = len(out)
        for pos, c in enumerate(out):
            c.score = 1.0 - pos / n
        return out
