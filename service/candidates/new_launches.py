"""New launches: items launched within the last ``days`` (not yet launched ones wait).

Ordered by the member's taste when there is a vector, else newest first, so "new in" is personal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.candidates import candidates
from service.domain import Candidate
from service.pipeline import SlotQuery


@dataclass
class NewLaunches:
    name: str = "new_launches"
    days: float = 30.0

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
        model = q.model
        ts = model.launch_ts  # newest first
        lo = np.searchsorted(-ts, -q.now, side="left")  # skip launches in the future
        hi = np.searchsorted(-ts, -(q.now - self.days * 86400), side="right")
        items, launched = model.launch_order[lo:hi], ts[lo:hi]
        vector = q.profile.vector
        if vector is not None:
            scores = model.bundle.item_factors[items] @ vector
        else:
            scores = 1.0 - (q.now - launched) / (self.days * 86400)
        age = dict(zip(items.tolist(), ((q.now - launched) // 86400).astype(int).tolist(), strict=True))
        return candidates(self.name, items, scores, n, lambda i, s: f"new: launched {age[i]} days ago")
