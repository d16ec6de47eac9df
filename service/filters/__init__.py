"""Filters: one file each; ``keep(q, items) -> bool array`` says which candidates may stay.

Vectorised over the item indices of all candidates at once; what a filter removes is in the trace
under its name.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

_SMALL = 16  # up to this many values, one comparison each beats np.isin's sort


def not_in(items: np.ndarray, values: Collection[int]) -> np.ndarray:
    """``~np.isin(items, values)`` without np.isin's fixed cost for the usual none-or-few values."""
    if not values:
        return np.ones(len(items), dtype=bool)
    if len(values) > _SMALL:
        return ~np.isin(items, np.fromiter(values, dtype=np.int64, count=len(values)))
    keep = np.ones(len(items), dtype=bool)
    for v in values:
        keep &= items != v
    return keep
