"""Items matching the search box text on brand, category or tags ("you may be looking for").

Strength of the match first (brand > category > tags); among equal matches the member's taste,
else popularity, decides. No query: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.candidates import candidates
from service.domain import Candidate
from service.pipeline import SlotQuery


@dataclass
class QueryMatch:
    name: str = "query_match"

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
        if not q.context.query.strip():
            return []
        match = q.model.match_query(q.context.query)
        if len(match.items) == 0:
            return []
        vector = q.profile.vector
        if vector is not None:
            taste = q.model.bundle.item_factors[match.items] @ vector
        else:
            taste = q.model.bundle.popularity_global[match.items].astype(np.float64)
        spread = float(taste.max() - taste.min()) or 1.0
        scores = match.strength + 0.5 * (taste - taste.min()) / spread
        query = q.context.query.strip()
        return candidates(self.name, match.items, scores, n,
                          lambda i, s: f"matches '{query}' on {match.fields[i]}")
