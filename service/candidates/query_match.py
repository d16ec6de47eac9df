"""Items matching the search box text on brand, category or tags ("you may be looking for").

Strength of the match first (brand > category > tags); among equal matches the member's taste,
else popularity, decides. No query: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.candidates import top
from service.engine.query import SlotQuery
from service.engine.slate import Found
from service.query_index import FIELD_NAMES

TASTE = 0.5  # most that taste adds to a match's strength


@dataclass
class QueryMatch:
    name: str = "query_match"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        if not q.context.query.strip():
            return Found.none()
        match = q.model.match_query(q.context.query)
        if len(match.items) == 0 or n <= 0:
            return Found.none()
        # taste adds at most TASTE to a strength (a sum of whole field weights): only the matches that
        # can reach the top n need their taste scored (a few hundred of a category's thousands)
        strong = match.strongest(n, TASTE)
        items, strength = match.items[strong], match.strength[strong]
        vector = q.profile.vector
        if vector is not None:
            taste = q.model.bundle.item_factors[items] @ vector
        else:
            taste = q.model.bundle.popularity_global[items].astype(np.float64)
        spread = float(taste.max() - taste.min()) or 1.0
        scores = strength + TASTE * (taste - taste.min()) / spread
        query = q.context.query.strip()
        at, values = top(np.arange(len(items)), scores, n)  # positions in the strong matches
        field = match.field[strong[at]]
        return Found(items[at], values, lambda k: f"matches '{query}' on {FIELD_NAMES[field[k]]}")
