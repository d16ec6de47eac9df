"""Query first: in the search box, items matching the typed text (brand, category, tags) move
ahead of the rest, strongest match first; the blended order decides among equals. Items another
source brought (ALS, trending) get a reason saying the query moved them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from service.engine.query import Report, SlotQuery
from service.engine.slate import Slate


@dataclass
class QueryFirst:
    name: str = "query_first"
    kind: ClassVar[str] = "boost"

    def apply(self, q: SlotQuery, slate: Slate) -> Report | None:
        query = q.context.query.strip()
        if not query or not len(slate):
            return None
        match = q.model.match_query(query)
        rows = slate.order
        strength = match.strength_for(slate.item[rows])
        hit = strength > 0
        lifted = rows[hit]
        slate.score[lifted] += strength[hit]
        slate.shift[lifted] += strength[hit]
        own = slate.names(lifted) == "query_match"  # that source's own reason already says it matched
        fields, items = match.fields, slate.item
        slate.because(lifted[~own], self.name, self.kind,
                      lambda row: f"moved up: matches '{query}' on {fields[int(items[row])]}")
        slate.sort()
        return None
