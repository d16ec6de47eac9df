"""Not just ordered: the items of the order on the page (delivery) are never offered again."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.query import SlotQuery
from service.filters import not_in


@dataclass
class NotJustOrdered:
    name: str = "just_ordered"

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        return not_in(items, q.model.known_items(q.context.order_item_ids))
