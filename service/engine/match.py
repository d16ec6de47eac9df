"""A rule's selector, evaluated against a model: vectorised over item indices or slate rows.

What depends only on the catalogue (category, brand, tag, item ids, price band) becomes one
boolean mask over all items, computed once per model and cached; what depends on the moment (new
launches) or on the candidate (its source) is checked per request on the candidates alone.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from service.engine.query import SlotQuery
from service.engine.slate import Slate
from service.model import ServingModel
from service.rules.schema import Selector

DAY = 86400


@dataclass(frozen=True)
class Columns:
    """A model's catalogue and member columns as selectors compare them (lower case)."""

    category: np.ndarray
    brand: np.ndarray
    tag: list[frozenset[str]]  # one set of tags per item
    tier: np.ndarray  # one per member

    def text(self, field: str) -> np.ndarray:
        """The one-value-per-item column ``field`` ('category' or 'brand')."""
        return {"category": self.category, "brand": self.brand}[field]


_COLUMNS: weakref.WeakKeyDictionary[ServingModel, Columns] = weakref.WeakKeyDictionary()


def columns(model: ServingModel) -> Columns:
    """Lower-cased category/brand arrays, tag sets and member tiers, once per model."""
    cols = _COLUMNS.get(model)
    if cols is None:
        items = model.bundle.items
        cols = Columns(category=np.char.lower(items.category.astype(str)),
                       brand=np.char.lower(items.brand.astype(str)),
                       tag=[frozenset(t.lower().split()) for t in items.tags.astype(str).tolist()],
                       tier=np.char.lower(model.bundle.members.tier.astype(str)))
        _COLUMNS[model] = cols
    return cols


def known_values(model: ServingModel, field: str) -> set[str]:
    """Every category, brand or tag the catalogue has (lower case), to warn about typos."""
    cols = columns(model)
    if field == "tag":
        return set[str]().union(*cols.tag)
    return set(np.unique(cols.text(field)).tolist())


def member_tier(q: SlotQuery) -> str:
    """The member's tier from the bundle (lower case), '' for a member the model does not know."""
    m = q.profile.member
    return "" if m is None else str(columns(q.model).tier[m])


class ItemMatcher:
    def __init__(self, selector: Selector) -> None:
        self.sel = selector
        self.about = selector.describe()
        self._masks: weakref.WeakKeyDictionary[ServingModel, np.ndarray] = weakref.WeakKeyDictionary()

    def mask(self, model: ServingModel) -> np.ndarray:
        """Catalogue-only part of the selector: one bool per item of ``model``."""
        found = self._masks.get(model)
        if found is None:
            found = self._build(model)
            self._masks[model] = found
        return found

    def items(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        """One bool per item index (filters: no source is known yet)."""
        hit = self.mask(q.model)[items]
        if self.sel.new_launch_days is not None:
            launched = q.model.bundle.items.launched_at[items]
            since = q.now - self.sel.new_launch_days * DAY
            hit = hit & (launched >= 0) & (launched <= q.now) & (launched >= since)
        return hit

    def rows(self, q: SlotQuery, slate: Slate, rows: np.ndarray) -> np.ndarray:
        """One bool per slate row, the source included (boosts, quotas)."""
        rows = np.asarray(rows, dtype=np.int64)
        hit = self.items(q, slate.item[rows])
        if self.sel.source is not None:
            sources = set(self.sel.source)
            named = np.array([o.name in sources for o in slate.origins], dtype=bool)
            hit = hit & named[slate.src[rows]]
        return hit

    def _build(self, model: ServingModel) -> np.ndarray:
        sel, cols, items = self.sel, columns(model), model.bundle.items
        mask = np.ones(model.n_items, dtype=bool)
        for name in ("category", "brand"):
            wanted = getattr(sel, name)
            if wanted:
                mask &= np.isin(cols.text(name), [w.lower() for w in wanted])
        if sel.tag:
            tags = frozenset(t.lower() for t in sel.tag)
            mask &= np.fromiter((not tags.isdisjoint(t) for t in cols.tag), dtype=np.bool_,
                                count=model.n_items)
        if sel.items:
            mask &= np.isin(model.item_ids, sel.items)
        if sel.price_min is not None or sel.price_max is not None:
            price = np.asarray(items.price, dtype=np.float64)
            with np.errstate(invalid="ignore"):  # unknown prices (nan) never match a band
                if sel.price_min is not None:
                    mask &= price >= sel.price_min
                if sel.price_max is not None:
                    mask &= price < sel.price_max
        return mask
