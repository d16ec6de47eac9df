"""In stock: stock != 0 (-1 means the catalogue does not know, and counts as in stock)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.query import SlotQuery


@dataclass
class InStock:
    name: str = "in_stock"

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        return q.model.bundle.items.stock[items] != 0
