"""No repeats on a page: an item placed in an earlier slot of the page is not shown again."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.query import SlotQuery
from service.filters import not_in


@dataclass
class NotOnPage:
    name: str = "page_dedup"

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        return not_in(items, q.exclude)
