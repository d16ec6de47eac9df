"""New launches: items launched within the last ``days`` (not yet launched ones wait).

Ordered by the member's taste when there is a vector, else newest first, so "new in" is personal.
The window's item vectors are copied out once (kept with the model until a launch enters or leaves
the window), so a request scores a contiguous block instead of gathering rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from service.candidates import top
from service.engine.query import SlotQuery
from service.engine.slate import Found
from service.model import ServingModel

_WINDOWS = 4  # windows kept per model


@dataclass
class NewLaunches:
    name: str = "new_launches"
    days: float = 30.0

    def fetch(self, q: SlotQuery, n: int) -> Found:
        model, now = q.model, q.now
        ts = model.launch_ts  # newest first
        negated = model.memo("new_launches.negated_ts", lambda: -ts)  # ascending, for searchsorted
        # integer keys: a float key would make searchsorted convert the whole int64 array each call
        lo = int(np.searchsorted(negated, -math.floor(now), side="left"))  # launched by now
        hi = int(np.searchsorted(negated, -math.ceil(now - self.days * 86400), side="right"))
        items, launched = model.launch_order[lo:hi], ts[lo:hi]
        vector = q.profile.vector
        if vector is not None:
            scores = _window_factors(model, lo, hi) @ vector
        else:
            scores = 1.0 - (now - launched) / (self.days * 86400)
        found, values = top(items, scores, n)
        at = model.bundle.items.launched_at
        return Found(found, values, lambda k: f"new: launched {int((now - at[found[k]]) // 86400)} days ago")


def _window_factors(model: ServingModel, lo: int, hi: int) -> np.ndarray:
    """Item vectors of ``launch_order[lo:hi]``, contiguous, kept with the model (a few windows: one
    per ``days`` a recipe uses; a window that moved replaces the old ones)."""
    windows: dict[tuple[int, int], np.ndarray] = model.memo("new_launches.windows", dict)
    factors = windows.get((lo, hi))
    if factors is None:
        factors = np.ascontiguousarray(model.bundle.item_factors[model.launch_order[lo:hi]])
        if len(windows) >= _WINDOWS:
            windows.clear()
        windows[(lo, hi)] = factors
    return factors
