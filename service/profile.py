"""What one request knows about the member: the bundle's history merged with fresh events.

Built once per request and shared by every slot of a page; each view (taste vector, seeds,
purchases) is computed on first use, so a slot that does not need it does not pay for it.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from service.domain import OnlineState
from service.model import ServingModel
from service.model_bundle import EVENT_BIT, EVENT_TYPES

if TYPE_CHECKING:
    from service.rerank.features import FeatureContext, MemberInputs

_BITS = np.array([EVENT_BIT[e] for e in EVENT_TYPES], dtype=np.uint8)
_PURCHASE = EVENT_TYPES.index("purchase")
_NEVER = np.iinfo(np.int64).min
_EVENT_INDEX = {e: i for i, e in enumerate(EVENT_TYPES) if e in EVENT_BIT}
SEEDS = 10  # recent items that seed "similar to what you looked at"
_SEARCH_STEP = 64  # taste searches ask for a multiple of this many items (a page's slots share one)


class Fresh(NamedTuple):
    """The state store's behaviour events on items the model knows, newest first, as columns."""

    items: np.ndarray  # int64 item indices
    events: np.ndarray  # int64 EVENT_TYPES indices
    ts: np.ndarray  # int64


class Purchases(NamedTuple):
    """The latest known purchase time of each item the member bought (items ascending)."""

    items: np.ndarray
    ts: np.ndarray

    def since(self, t: float) -> np.ndarray:
        """Items bought at ``t`` or later."""
        return self.items[self.ts >= t]

    def last(self, items: np.ndarray) -> np.ndarray:
        """The latest purchase time of each of ``items`` (-1: never bought)."""
        if not len(self.items):
            return np.full(len(items), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.items, items), len(self.items) - 1)
        return np.where(self.items[at] == items, self.ts[at], -1)


class MemberProfile:
    def __init__(self, model: ServingModel, member_id: str, state: OnlineState, now: float, *,
                 index: int | None = None) -> None:
        """``index``: the member's row in the model, when the caller has it (the trainer's pools)."""
        self.model = model
        self.member_id = member_id
        self.member = model.member(member_id) if index is None else index  # None: cold start
        self.state = state
        self.now = now
        self.history = model.history(self.member)

    @cached_property
    def fresh(self) -> Fresh:
        """The state store's behaviour events on known items (newest first)."""
        index, items, events, ts = self.model.item_index, [], [], []
        for ev in self.state.recent:
            item = index.get(ev.item_id)
            if item is not None and ev.event in _EVENT_INDEX:
                items.append(item)
                events.append(_EVENT_INDEX[ev.event])
                ts.append(ev.ts)
        return Fresh(np.array(items, np.int64), np.array(events, np.int64), np.array(ts, np.int64))

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
        fresh = self.fresh
        if not len(fresh.items):  # the bundle's history holds each item once: nothing to merge
            items, ts = b.history_items[h].astype(np.int64), b.history_last_ts[h].astype(np.int64)
            total = self.model.decayed(hist_weight, self.now - ts, half_life)
            order = np.lexsort((items, -ts))  # newest first, then by item (as merged events are)
            return items[order], self.model.squash(total[order]), ts[order]
        items = np.concatenate([b.history_items[h], fresh.items]).astype(np.int64)
        weight = np.concatenate([hist_weight, weights[fresh.events]])
        ts = np.concatenate([b.history_last_ts[h], fresh.ts]).astype(np.int64)
        items, inverse = np.unique(items, return_inverse=True)
        decayed = self.model.decayed(weight, self.now - ts, half_life)
        total = np.bincount(inverse, weights=decayed, minlength=len(items))
        last = np.full(len(items), _NEVER, dtype=np.int64)
        np.maximum.at(last, inverse, ts)
        order = np.argsort(-last, kind="stable")
        return items[order], self.model.squash(total[order]), last[order]

    @cached_property
    def vector(self) -> np.ndarray | None:
        """Taste vector: the trained one, or folded in again when fresh events arrived since (with
        the trainer's member re-solve half-life when it used one, so both solve the same problem)."""
        if len(self.fresh.items):
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
        return bool(len(self.fresh.items))

    @cached_property
    def seeds(self) -> tuple[np.ndarray, np.ndarray]:
        """The most recent items the member touched and how much each says about them."""
        items, conf, _ = self.interactions
        return items[:SEEDS], conf[:SEEDS]

    @cached_property
    def purchases(self) -> Purchases:
        """Latest known purchase time per item (bundle: last event time of a bought item, an upper
        bound; state store: the purchase event itself)."""
        b = self.model.bundle
        h = self.history
        bought = b.history_purchases[h] > 0
        fresh = self.fresh
        new = fresh.events == _PURCHASE
        items = b.history_items[h][bought].astype(np.int64)
        ts = b.history_last_ts[h][bought].astype(np.int64)
        if not new.any():  # the bundle's history holds each item once
            order = np.argsort(items, kind="stable")
            return Purchases(items[order], ts[order])
        items = np.concatenate([items, fresh.items[new]])
        ts = np.concatenate([ts, fresh.ts[new]])
        items, inverse = np.unique(items, return_inverse=True)
        last = np.full(len(items), -1, dtype=np.int64)
        np.maximum.at(last, inverse, ts)
        return Purchases(items, last)

    def rerank_inputs(self, ctx: FeatureContext) -> MemberInputs:
        """The re-ranker's view of the member (bundle history + fresh events, taste vector), made
        once per request: the slots of a page share it, and its member summaries."""
        cached = self.__dict__.get("_rerank_inputs")
        if cached is None or cached[0] is not ctx:
            cached = (ctx, ctx.member_inputs(self.member, self.now, fresh=self.fresh, vector=self.vector))
            self.__dict__["_rerank_inputs"] = cached
        return cached[1]
