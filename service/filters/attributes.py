"""Hard filters from the rules file: include / exclude by attribute, tier-only items, minimum stock.

Each is a pipeline ``Filter`` named after the merchandiser's rule, so what it removed is in the
trace under that name. They run with the slot's built-in filters, before the blend, and apply to
backfilled items and pinned items too: nothing a hard filter refuses is ever served.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.match import ItemMatcher, member_tier
from service.engine.query import SlotQuery


@dataclass
class Include:
    name: str
    matcher: ItemMatcher

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        return self.matcher.items(q, items)

    def describe(self) -> str:
        return f"only items with {self.matcher.about}"


@dataclass
class Exclude:
    name: str
    matcher: ItemMatcher

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        return ~self.matcher.items(q, items)

    def describe(self) -> str:
        return f"never items with {self.matcher.about}"


@dataclass
class TierOnly:
    """Matching items only for members whose tier is in ``tiers`` (unknown members have no tier)."""

    name: str
    matcher: ItemMatcher
    tiers: tuple[str, ...]

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        if member_tier(q) in {t.lower() for t in self.tiers}:
            return np.ones(len(items), dtype=bool)
        return ~self.matcher.items(q, items)

    def describe(self) -> str:
        return f"items with {self.matcher.about} only for {', '.join(self.tiers)} members"


@dataclass
class MinStock:
    name: str
    min_stock: int = 1

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        stock = q.model.bundle.items.stock[items]
        return (stock < 0) | (stock >= self.min_stock)  # -1: the catalogue does not know

    def describe(self) -> str:
        return f"at least {self.min_stock} in stock"
