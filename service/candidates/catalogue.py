"""The ``catalogue`` source: items the merchandisers choose by attribute (a brand, a tag, a price
band, new launches), best first by the member's taste, else by popularity.

It lets a slot defined in the rules file bring items no model would pick, e.g. a ``cart_page`` of
add-ons under 20 yuan or a gold corner of ``gold-only`` items, with no code change. With no
attributes it is the whole catalogue in the member's taste order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.candidates import best, same
from service.engine.match import DAY, ItemMatcher
from service.engine.query import SlotQuery
from service.engine.slate import Found


@dataclass
class Catalogue:
    matcher: ItemMatcher
    name: str = "catalogue"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        items = np.flatnonzero(self.matcher.mask(q.model))
        days = self.matcher.sel.new_launch_days
        if days is not None:
            launched = q.model.bundle.items.launched_at[items]
            items = items[(launched >= 0) & (launched <= q.now) & (launched >= q.now - days * DAY)]
        vector = q.profile.vector
        if vector is not None:
            scores = q.model.bundle.item_factors[items] @ vector
        else:
            scores = q.model.bundle.popularity_global[items].astype(np.float64)
        return best(items, scores, n, same(f"chosen by the merchandisers: {self.matcher.about}"))
