"""Personal ALS: items nearest the member's taste vector (FAISS inner product).

A member with fresh events gets a vector folded in from them (see MemberProfile.vector), so a
click changes the next answer without waiting for the nightly training. Cold start: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.reference_engine.candidates import candidates
from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery


@dataclass
class PersonalAls:
    name: str = "als"

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
        if q.profile.vector is None:
            return []
        items, scores = q.profile.nearest(n)
        basis = "your latest activity" if q.profile.folded_in else "your history"
        return candidates(self.name, items, scores, n, lambda i, s: f"fits your taste from {basis} "
                                                                    f"(score {s:.3f})")
