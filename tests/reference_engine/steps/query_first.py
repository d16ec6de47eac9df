"""Query first: in the search box, items matching the typed text (brand, category, tags) move
ahead of the rest, strongest match first; the blended order decides among equals. Items another
source brought (ALS, trending) get a reason saying the query moved them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery


@dataclass
class QueryFirst:
    name: str = "query_first"
    kind: ClassVar[str] = "boost"

    def apply(self, q: SlotQuery, candidates: list[Candidate]) -> list[Candidate]:
        query = q.context.query.strip()
        if not query or not candidates:
            return candidates
        match = q.model.match_query(query)
        strength = match.strength_for(np.fromiter((c.item for c in candidates), np.int64, len(candidates)))
        for c, s in zip(candidates, strength.tolist(), strict=True):
            if s > 0:
                c.lift(s)
                if c.source != "query_match":  # that source's own reason already says it matched
                    c.because(self.name, self.kind, f"moved up: matches '{query}' on {match.fields[c.item]}")
        return sorted(candidates, key=lambda c: -c.score)
