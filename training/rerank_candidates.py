"""Candidate pools for re-ranker training and evaluation, made the way the service makes them.

Mirrors the service's sources (service/candidates: ``als``, ``similar_recent``, ``category_popular``,
``popular``, ``trending``) and its blend (service.blend.Interleave, a smooth weighted round-robin
with first-come de-duplication and score = 1 - position / length) on a `FirstStage` fitted before
the cutoff. Only the training side lives here; the service keeps its own sources. The pool a
member gets is a "for you" slot: the config's ``reranker.sources`` weights.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from service.model import NormPrunedSearch
from service.model_bundle import EVENT_BIT, EVENT_TYPES, ItemTable
from service.rerank.features import Candidates, FeatureContext
from training.config import TrainConfig

SEEDS = 10  # as service.profile.SEEDS: recent items that seed "similar" and "category" sources
CATEGORY_LIST = 500  # as service.model.CATEGORY_LIST_SIZE
_BITS = np.array([EVENT_BIT[e] for e in EVENT_TYPES], dtype=np.uint8)
_PURCHASE = EVENT_TYPES.index("purchase")


@dataclass
class FirstStage:
    """First-stage models fitted on one period, in bundle form (the arrays a bundle would carry)."""

    items: ItemTable
    arrays: dict[str, np.ndarray]  # the service.model_bundle.ARRAYS keys
    seen: sp.csr_matrix  # members x items the member touched in that period (all of them)
    ctx: FeatureContext
    now: int  # the period's clock: its newest event
    als: Any = None  # the fitted training.als.ALS behind the factors (None when built from a bundle)

    @property
    def member_factors(self) -> np.ndarray:
        return self.arrays["member_factors"]


class PoolMaker:
    """Per-bundle lookups (orders, category lists) and the per-member source calls."""

    def __init__(self, fs: FirstStage, config: TrainConfig) -> None:
        self.fs, self.config = fs, config
        a = fs.arrays
        self.item_factors = a["item_factors"]
        self.pop = a["popularity_global"].astype(np.float64)
        self.weights = {k: v for k, v in config.reranker.sources.items() if v > 0}
        # the filters every slot runs (in_stock, on_shelf): the service never re-ranks these items.
        # Stock is a snapshot taken after the cutoff, so it is also a small leak we keep out of pools.
        stock = np.asarray(fs.items.stock)
        self.servable = (stock != 0) & np.asarray(fs.items.on_shelf, dtype=bool)
        self._allowed = self.servable.copy()
        # the service's exact length-pruned search, over what a slot could serve
        self.servable_items = np.flatnonzero(self.servable)
        self.als_search = NormPrunedSearch(self.item_factors[self.servable_items])
        popular = np.argsort(-a["popularity_global"], kind="stable")
        trending = np.argsort(-a["popularity_trending"], kind="stable")
        self.popular_order = popular[self.servable[popular]]
        self.trending_order = trending[self.servable[trending]]
        w = config.weighting
        self.event_weights = np.array(w.events.as_array())
        self.half_life, self.log_scale = w.half_life, w.log_scale
        cat = fs.ctx.category
        ordered = self.popular_order[cat[self.popular_order] >= 0]  # most popular first
        by_cat = ordered[np.argsort(cat[ordered], kind="stable")]  # grouped, popular first in each
        bounds = np.searchsorted(cat[by_cat], np.arange(fs.ctx.n_categories + 1))
        self.category_top = [by_cat[bounds[c]:min(bounds[c + 1], bounds[c] + CATEGORY_LIST)]
                             for c in range(fs.ctx.n_categories)]

    def pools(self, members: np.ndarray, n: int) -> Iterator[tuple[int, Candidates]]:
        """(member, blended candidate batch of at most n items) for each member, in order."""
        for m in np.asarray(members, dtype=np.int64).tolist():
            seen = self.fs.seen.indices[self.fs.seen.indptr[m]:self.fs.seen.indptr[m + 1]]
            yield m, interleave(self._sources(m, seen, n), self.weights, n)

    def _sources(self, m: int, seen: np.ndarray, n: int) -> dict[str, np.ndarray]:
        exclude = seen if self.config.reranker.exclude_seen else np.zeros(0, dtype=np.int64)
        want = n + len(exclude)  # enough that n survive the exclusion
        allowed = self._allowed  # servable and not excluded: one lookup per item instead of isin
        allowed[exclude] = False
        try:
            return self._pick(m, allowed, n, want)
        finally:
            allowed[exclude] = self.servable[exclude]

    def _pick(self, m: int, allowed: np.ndarray, n: int, want: int) -> dict[str, np.ndarray]:
        seeds, conf = self._seeds(m)
        out: dict[str, np.ndarray] = {}
        for name in self.weights:
            if name == "als":
                found, _, _ = self.als_search.search(self.fs.member_factors[m], want)
                items = self.servable_items[found]
            elif name == "popular":
                items = self.popular_order[:want]
            elif name == "trending":
                items = self.trending_order[:want]
            elif name == "similar_recent":
                items = self._similar(seeds, conf)
            else:
                items = self._category(seeds, conf, n)
            out[name] = items[allowed[items]][:n]
        return out

    def _seeds(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """The member's most recent items and ALS-style confidence (as service.profile.seeds)."""
        a = self.fs.arrays
        h = slice(int(a["history_indptr"][m]), int(a["history_indptr"][m + 1]))
        items, mask, last = a["history_items"][h], a["history_events"][h], a["history_last_ts"][h]
        weight = ((mask[:, None] & _BITS) > 0) @ self.event_weights
        weight = weight + np.maximum(a["history_purchases"][h] - 1, 0) * self.event_weights[_PURCHASE]
        if self.half_life:
            weight = weight * np.exp2(-np.maximum(self.fs.now - last, 0) / self.half_life)
        conf = np.log1p(weight) if self.log_scale else weight
        order = np.argsort(-last, kind="stable")[:SEEDS]
        return items[order].astype(np.int64), conf[order]

    def _similar(self, seeds: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """Neighbours of the seeds by sum of weight x similarity (service similar.neighbours)."""
        if len(seeds) == 0:
            return np.zeros(0, dtype=np.int64)
        nb = self.fs.arrays["neighbour_items"][seeds].astype(np.int64)
        contrib = self.fs.arrays["neighbour_scores"][seeds] * conf[:, None]
        keep = (nb >= 0) & ~np.isin(nb, seeds)
        items, inverse = np.unique(nb[keep], return_inverse=True)
        total = np.bincount(inverse, weights=contrib[keep], minlength=len(items))
        return items[np.argsort(-total, kind="stable")]

    def _category(self, seeds: np.ndarray, conf: np.ndarray, n: int) -> np.ndarray:
        """Popular items of the seeds' categories, share x popularity (service PopularInCategory)."""
        cats = self.fs.ctx.category[seeds]
        ok = cats >= 0
        if not ok.any():
            return np.zeros(0, dtype=np.int64)
        share = np.bincount(cats[ok], weights=conf[ok], minlength=self.fs.ctx.n_categories)
        total = share.sum() or 1.0
        items, scores = [], []
        for c in np.flatnonzero(share > 0):
            top = self.category_top[c][:n]
            if len(top):
                items.append(top)
                scores.append(share[c] / total * self.pop[top] / max(float(self.pop[top[0]]), 1e-9))
        if not items:
            return np.zeros(0, dtype=np.int64)
        items_a, scores_a = np.concatenate(items), np.concatenate(scores)
        return items_a[np.argsort(-scores_a, kind="stable")]


def interleave(pools: dict[str, np.ndarray], weights: dict[str, float], n: int) -> Candidates:
    """Smooth weighted round-robin over the pools, first come first placed (service.blend.Interleave).

    Which pool takes each turn depends only on the weights until a pool runs out, so that order is
    worked out once per set of weights (`_turns`) and shared by every member; the loop here only
    places items. From a pool's end on, `_round_robin` goes on turn by turn, from the same credits.
    """
    names = [k for k in weights if k in pools and len(pools[k])]
    queues = [pools[k].tolist() for k in names]
    w = [weights[k] for k in names]
    heads = [0] * len(names)
    placed: set[int] = set()
    items: list[int] = []
    sources: list[str] = []
    turns, credits = _turns(tuple(w), n) if names else ((), ())
    for step, best in enumerate(turns):
        if len(items) >= n:
            break
        if _take(best, names, queues, heads, placed, items, sources):  # done: the turns change
            credit = list(credits[step])
            total = sum(w) - w[best]
            for lst in (names, queues, w, heads, credit):
                del lst[best]
            _round_robin(names, queues, w, heads, credit, total, placed, items, sources, n)
            break
    return Candidates.from_names(items, sources)


@functools.lru_cache(maxsize=64)
def _turns(w: tuple[float, ...], n: int) -> tuple[tuple[int, ...], tuple[tuple[float, ...], ...]]:
    """The pool of each of the first ``n`` turns while none runs out, and the credits after each."""
    credit = [0.0] * len(w)
    total = sum(w)
    turns, credits = [], []
    for _ in range(n):
        turns.append(_next_turn(credit, w, total))
        credits.append(tuple(credit))
    return tuple(turns), tuple(credits)


def _next_turn(credit: list[float], w: tuple[float, ...] | list[float], total: float) -> int:
    """One turn of the smooth weighted round-robin: every pool earns its weight, the richest takes
    the turn and pays ``total`` (``credit`` is updated in place)."""
    best = 0
    for j in range(len(w)):
        credit[j] += w[j]
        if credit[j] > credit[best]:
            best = j  # ties go to the recipe's first source
    credit[best] -= total
    return best


def _round_robin(names: list[str], queues: list[list[int]], w: list[float], heads: list[int],
                 credit: list[float], total: float, placed: set[int], items: list[int],
                 sources: list[str], n: int) -> None:
    """The round-robin turn by turn (after a pool ran out), appending to ``items`` and ``sources``."""
    while names and len(items) < n:
        best = _next_turn(credit, w, total)
        if _take(best, names, queues, heads, placed, items, sources):
            total -= w[best]
            for lst in (names, queues, w, heads, credit):
                del lst[best]


def _take(best: int, names: list[str], queues: list[list[int]], heads: list[int], placed: set[int],
          items: list[int], sources: list[str]) -> bool:
    """Pool ``best``'s turn: place its next item not placed yet. True when the pool is done."""
    q, i = queues[best], heads[best]
    while i < len(q) and q[i] in placed:
        i += 1
    if i < len(q):
        placed.add(q[i])
        items.append(q[i])
        sources.append(names[best])
        i += 1
    heads[best] = i
    return i >= len(q)
