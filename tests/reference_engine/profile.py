"""What one request knows about the member: the bundle's history merged with fresh events.

Built once per request and shared by every slot of a page; each view (taste vector, seeds,
purchases) is computed on first use, so a slot that does not need it does not pay for it.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from service.model import ServingModel
from service.model_bundle import EVENT_BIT, EVENT_TYPES
from tests.reference_engine.domain import OnlineState

if TYPE_CHECKING:
    from service.rerank.features import FeatureContext, MemberInputs

_BITS = np.array([EVENT_BIT[e] for e in EVENT_TYPES], dtype=np.uint8)
_PURCHASE = EVENT_TYPES.index("purchase")
SEEDS = 10  # recent items that seed "similar to what you looked at"
_SEARCH_STEP = 64  # taste searches ask for a multiple of this many items (a page's slots share one)


class MemberProfile:
    def __init__(self, model: ServingModel, member_id: str, state: OnlineState, now: float) -> None:
        self.model = model
        self.member_id = member_id
        self.member = model.member(member_id)  # None: cold start
        self.state = state
        self.now = now
        self.history = model.history(self.member)

    @cached_property
    def fresh(self) -> list[tuple[int, int, int]]:
        """(item, event type index, ts) of the state store's behaviour events on known items."""
        out = []
        for ev in self.state.recent:
            item = self.model.item_index.get(ev.item_id)
            if item is not None and ev.event in EVENT_BIT:
                out.append((item, EVENT_TYPES.index(ev.event), ev.ts))
        return out

    @cached_property
    def interactions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items the member touched, with ALS confidence and last time, newest first.

        Bundle history (event-type bits, purchase counts) and fresh events are weighted like the
        trainer weights events, decayed by age, summed per item, then squashed once."""
        return self._weighted(None)

    def _weighted(self, half_life: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b, h = self.model.bundle, self.history
        weights = self.model.event_weights
        hist_weight = ((b.history_events[h][:, None] & _BITS) > 0) @ weights
        hist_weight = hist_weight + np.maximum(b.history_purchases[h] - 1, 0) * weights[_PURCHASE]
        items = np.concatenate([b.history_items[h], [f[0] for f in self.fresh]]).astype(np.int64)
        weight = np.concatenate([hist_weight, weights[[f[1] for f in self.fresh]]])
        ts = np.concatenate([b.history_last_ts[h], [f[2] for f in self.fresh]]).astype(np.int64)
        items, inverse = np.unique(items, return_inverse=True)
        decayed = self.model.decayed(weight, self.now - ts, half_life)
        total = np.bincount(inverse, weights=decayed, minlength=len(items))
        last = np.full(len(items), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last, inverse, ts)
        order = np.argsort(-last, kind="stable")
        return items[order], self.model.squash(total[order]), last[order]

    @cached_property
    def vector(self) -> np.ndarray | None:
        """Taste vector: the trained one, or folded in again when fresh events arrived since (with
        the trainer's member re-solve half-life when it used one, so both solve the same problem)."""
        if self.fresh:
            sharp = self.model.member_half_life
            items, conf, _ = self._weighted(sharp) if sharp else self.interactions
            return self.model.fold_in(items, conf)
        if self.member is None:
            return None
        return self.model.bundle.member_factors[self.member]

    def nearest(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items nearest the taste vector, best first (empty without a vector). Searched once
        per request for the largest ``k`` asked so far (rounded up), so a page's slots share one search."""
        found = self.__dict__.get("_nearest")
        if found is None or (len(found[0]) < k and found[2] < k):
            vector = self.vector
            want = -(-k // _SEARCH_STEP) * _SEARCH_STEP
            items, scores = (np.zeros(0, np.int64), np.zeros(0, np.float32)) if vector is None else \
                self.model.search(vector, want)
            found = self.__dict__["_nearest"] = (items, scores, want)
        return found[0][:k], found[1][:k]

    @property
    def folded_in(self) -> bool:
        return bool(self.fresh)

    @cached_property
    def seeds(self) -> tuple[np.ndarray, np.ndarray]:
        """The most recent items the member touched and how much each says about them."""
        items, conf, _ = self.interactions
        return items[:SEEDS], conf[:SEEDS]

    @cached_property
    def purchased_at(self) -> dict[int, int]:
        """item -> latest known purchase time (bundle: last event time of a bought item, an upper
        bound; state store: the purchase event itself)."""
        b = self.model.bundle
        h = self.history
        bought = b.history_purchases[h] > 0
        out = dict(zip(b.history_items[h][bought].tolist(), b.history_last_ts[h][bought].tolist(),
                       strict=True))
        for item, event, ts in self.fresh:
            if event == _PURCHASE and ts > out.get(item, -1):
                out[item] = ts
        return out

    def rerank_inputs(self, ctx: FeatureContext) -> MemberInputs:
        """The re-ranker's view of the member (bundle history + fresh events, taste vector), made
        once per request: the slots of a page share it, and its member summaries."""
        cached = self.__dict__.get("_rerank_inputs")
        if cached is None or cached[0] is not ctx:
            cached = (ctx, ctx.member_inputs(self.member, self.now, recent=self.fresh, vector=self.vector))
            self.__dict__["_rerank_inputs"] = cached
        return cached[1]
