"""Repeat purchases that are due: a consumable bought k >= 2 times at mean interval I is due
again once ``due_ratio`` x I has passed since the last purchase."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.candidates import top
from service.engine.query import SlotQuery
from service.engine.slate import Found


@dataclass
class RepeatPurchase:
    name: str = "repeat_purchase"
    due_ratio: float = 0.8
    min_purchases: int = 2

    def fetch(self, q: SlotQuery, n: int) -> Found:
        b = q.model.bundle
        h = q.profile.history
        count = b.history_purchases[h].astype(np.int64)
        first = b.history_first_purchase_ts[h]
        ok = (count >= self.min_purchases) & (first >= 0)
        items = b.history_items[h][ok].astype(np.int64)
        count, first = count[ok], first[ok]
        last = b.history_last_ts[h][ok].astype(np.int64)
        last = np.maximum(last, q.profile.purchases.last(items))  # a purchase since training moves "last"
        interval = (last - first) / np.maximum(count - 1, 1)
        since = q.now - last
        due = (interval > 0) & (since >= self.due_ratio * interval)
        items, count, interval, since = items[due], count[due], interval[due], since[due]
        overdue = np.minimum(since / interval, 3.0)  # long-abandoned items do not grow forever
        found, values = top(np.arange(len(items)), overdue, n)  # positions in the due items
        def explain(k: int) -> str:
            at = found[k]
            days, ago = float(interval[at]) / 86400, float(since[at]) / 86400
            return (f"due again: bought {int(count[at])} times, about every {days:.0f} days, "
                    f"last {ago:.0f} days ago")

        return Found(items[found], values, explain)
