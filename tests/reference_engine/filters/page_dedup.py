"""No repeats on a page: an item placed in an earlier slot of the page is not shown again."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.reference_engine.filters import not_in
from tests.reference_engine.pipeline import SlotQuery


@dataclass
class NotOnPage:
    name: str = "page_dedup"

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        return not_in(items, q.exclude)
