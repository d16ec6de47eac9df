"""Personal ALS: items nearest the member's taste vector (FAISS inner product).

A member with fresh events gets a vector folded in from them (see MemberProfile.vector), so a
click changes the next answer without waiting for the nightly training. Cold start: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.candidates import top
from service.engine.query import SlotQuery
from service.engine.slate import Found


@dataclass
class PersonalAls:
    name: str = "als"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        if q.profile.vector is None:
            return Found.none()
        items, scores = q.profile.nearest(n)
        basis = "your latest activity" if q.profile.folded_in else "your history"
        found, values = top(items, scores, n)
        return Found(found, values, lambda k: f"fits your taste from {basis} (score {values[k]:.3f})")
