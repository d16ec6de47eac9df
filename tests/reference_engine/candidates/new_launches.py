"""New launches: items launched within the last ``days`` (not yet launched ones wait).

Ordered by the member's taste when there is a vector, else newest first, so "new in" is personal.
The window's item vectors are copied out once (kept with the model until a launch enters or leaves
the window), so a request scores a contiguous block instead of gathering rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from service.model import ServingModel
from tests.reference_engine.candidates import make, top
from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery

_WINDOWS = 4  # windows kept per model


@dataclass
class NewLaunches:
    name: str = "new_launches"
    days: float = 30.0

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
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
        best, values = top(items, scores, n)
        days = ((now - model.bundle.items.launched_at[best]) // 86400).astype(np.int64).tolist()
        return make(self.name, best, values, [f"new: launched {d} days ago" for d in days])


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
