"""On shelf: items the merchandisers took off the shelf are never served."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.query import SlotQuery


@dataclass
class OnShelf:
    name: str = "on_shelf"

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        return q.model.bundle.items.on_shelf[items]
