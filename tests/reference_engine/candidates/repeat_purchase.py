"""Repeat purchases that are due: a consumable bought k >= 2 times at mean interval I is due
again once ``due_ratio`` x I has passed since the last purchase."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.reference_engine.candidates import candidates
from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery


@dataclass
class RepeatPurchase:
    name: str = "repeat_purchase"
    due_ratio: float = 0.8
    min_purchases: int = 2

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
        b = q.model.bundle
        h = q.profile.history
        count = b.history_purchases[h].astype(np.int64)
        first = b.history_first_purchase_ts[h]
        ok = (count >= self.min_purchases) & (first >= 0)
        items = b.history_items[h][ok].astype(np.int64)
        count, first = count[ok], first[ok]
        last = b.history_last_ts[h][ok].astype(np.int64)
        fresh = q.profile.purchased_at  # a purchase since training moves "last"
        last = np.maximum(last, [fresh.get(i, -1) for i in items.tolist()]).astype(np.int64)
        interval = (last - first) / np.maximum(count - 1, 1)
        since = q.now - last
        due = (interval > 0) & (since >= self.due_ratio * interval)
        items, count, interval, since = items[due], count[due], interval[due], since[due]
        overdue = np.minimum(since / interval, 3.0)  # long-abandoned items do not grow forever
        info = {i: (c, iv / 86400, s / 86400) for i, c, iv, s in
                zip(items.tolist(), count.tolist(), interval.tolist(), since.tolist(), strict=True)}
        return candidates(self.name, items, overdue, n, lambda i, s: (
            "due again: bought {} times, about every {:.0f} days, last {:.0f} days ago".format(*info[i])))
