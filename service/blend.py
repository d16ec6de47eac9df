"""Blending: merge the filtered pools of a slot's sources into one ordered list.

``Interleave`` is a smooth weighted round-robin: a source with weight 0.75 fills about three of
every four positions, spread evenly, so "personal with some new launches mixed in" is literally the
recipe's weights. An item brought by two sources keeps its first place and gains an "also" reason.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from service.domain import Candidate
from service.pipeline import SlotQuery


@dataclass
class Interleave:
    weights: dict[str, float] = field(default_factory=dict)
    name: str = "interleave"

    def describe(self) -> str:
        total = sum(self.weights.values()) or 1.0
        return " · ".join(f"{n} {w / total:.0%}" for n, w in self.weights.items())

    def blend(self, q: SlotQuery, pools: dict[str, list[Candidate]]) -> list[Candidate]:
        queues = {n: deque(p) for n, p in pools.items() if p and self.weights.get(n, 0) > 0}
        credit = dict.fromkeys(queues, 0.0)
        placed: dict[int, Candidate] = {}
        out: list[Candidate] = []
        while queues:
            total = sum(self.weights[n] for n in queues)
            for n in queues:
                credit[n] += self.weights[n]
            pick = max(queues, key=credit.__getitem__)  # ties go to the recipe's first source
            credit[pick] -= total
            queue = queues[pick]
            while queue and queue[0].item in placed:
                placed[queue.popleft().item].because(self.name, "blend", f"also from {pick}")
            if queue:
                c = queue.popleft()
                placed[c.item] = c
                out.append(c)
            if not queue:
                del queues[pick], credit[pick]
        for pos, c in enumerate(out):
            c.score = 1.0 - pos / len(out)
        return out
