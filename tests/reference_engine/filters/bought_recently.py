"""Not bought recently: no item the member bought within ``days`` (bundle history and fresh
purchase events alike), so a purchase stops the item being pushed at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.reference_engine.filters import not_in
from tests.reference_engine.pipeline import SlotQuery


@dataclass
class NotBoughtRecently:
    name: str = "bought_recently"
    days: float = 14.0

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        since = q.now - self.days * 86400
        recent = [i for i, ts in q.profile.purchased_at.items() if ts >= since]
        return not_in(items, recent)
