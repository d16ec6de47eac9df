"""Frequency caps: an item at most N impressions per member per day (or over a window of days).

Impressions are counted across all slots, in the state store, from what the service served and
from the impressions the frontend reports (TrackEvents), whichever is higher per day (see
service/state/keys.py). Days are UTC calendar days: "back the next day" means after 00:00 UTC.
When the state store cannot be read the cap cannot be checked and lets everything through (the
response is marked degraded, and the trace says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.query import SlotQuery


@dataclass
class FrequencyCap:
    name: str = "frequency_cap"
    max: int = 3
    days: int = 1

    def keep(self, q: SlotQuery, items: np.ndarray) -> np.ndarray:
        if q.state.degraded:
            return np.ones(len(items), dtype=bool)
        seen = q.state.impressions_over(self.days)
        capped = q.model.known_items([i for i, n in seen.items() if n >= self.max])
        return ~np.isin(items, capped)

    def remark(self, q: SlotQuery) -> str:
        """For the trace: why the cap let everything through."""
        return "state store unavailable: not applied" if q.state.degraded else ""

    def describe(self) -> str:
        window = "today" if self.days == 1 else f"in the last {self.days} days"
        return f"at most {self.max} impression{'s' * (self.max != 1)} per member {window}, all slots"


@dataclass
class ShownToday(FrequencyCap):
    """Not shown to this member today (a cap of one impression a day, in the merchandiser's words)."""

    name: str = "shown_today"
    max: int = 1
    days: int = 1

    def describe(self) -> str:
        return "not already shown to this member today (any slot)"
