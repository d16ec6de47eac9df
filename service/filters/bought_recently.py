"""Not bought recently: no item the member bought within ``days`` (bundle history and fresh
purchase events alike), so a purchase stops the item being pushed at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.query import SlotQuery
from service.filters import not_in


@dataclass
class NotBoughtRecently:
    name: str = "bought_recently"
    days: float = 14.0

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        return not_in(items, q.profile.purchases.since(q.now - self.days * 86400))
