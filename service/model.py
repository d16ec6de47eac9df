"""A loaded bundle plus the lookups the slot pipeline needs, built once when the bundle loads.

Everything here is computed in the reload thread (orderings, per-category lists, the query index,
YᵀY for fold-in, the items sorted by vector length for exact search), so a request only slices
arrays. A ServingModel is immutable once built: the
holder swaps whole models, and a request keeps the one it started with.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from service.ids import IdIndex, text_array, unique_text
from service.model_bundle import EVENT_TYPES, Bundle, load
from service.query_index import QUERY_FIELD_WEIGHTS, build_query_index, match_query

#: Used only when a bundle's manifest does not record its weighting (the trainer's defaults).
FALLBACK_EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "fav": 4.0, "cart": 6.0, "purchase": 10.0}
FALLBACK_HALF_LIFE = 30 * 86400.0
CATEGORY_LIST_SIZE = 500  # items kept per category list (most popular first)
T = TypeVar("T")
_BATCH_SCORES = 1 << 22  # scores one round of NormPrunedSearch.shortlist holds at most


class NormPrunedSearch:
    """Exact top-k inner product search that reads only the items that can make the top k.

    Items are kept sorted by vector length, longest first. Cauchy-Schwarz bounds any item's score
    by ``|q| * |y|``, so once the k-th best score found so far reaches ``|q|`` times the length of
    the next unread item, no unread item can enter the top k and the scan stops (the length-based
    pruning of exact MIPS methods such as LEMP). ALS item vectors are a good fit: their lengths
    span orders of magnitude (popular items are long), so a member's top 100 is settled after a few
    percent of the catalogue. The answer is the exact one (ties aside), whatever the data; only the
    time depends on it. A zero query (a member with no history) has no ranking: nothing is returned.
    """

    def __init__(self, vectors: np.ndarray, first_block: int = 1024) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1)
        self.order = np.argsort(-norms, kind="stable").astype(np.int64)
        self.vectors = np.ascontiguousarray(vectors[self.order])
        self.norms = norms[self.order]
        self.n = len(vectors)
        self.first_block = first_block

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(item indices best first, scores, items read)."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        k = min(k, self.n)
        q_norm = float(np.sqrt(q @ q))
        if k <= 0 or q_norm == 0.0 or not np.isfinite(q_norm):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), 0
        read = min(self.n, max(self.first_block, 2 * k))
        scores = self.vectors[:read] @ q
        while read < self.n:
            kth = np.partition(scores, read - k)[read - k]  # k-th best so far
            if kth >= q_norm * self.norms[read]:
                break  # every unread item scores at most |q| |y| <= kth
            more = min(self.n, read * 2)
            scores = np.concatenate([scores, self.vectors[read:more] @ q])
            read = more
        top = np.argpartition(-scores, k - 1)[:k] if k < read else np.arange(read)
        items, found = self.rescore(q, top, k)
        return items, found, read

    def shortlist(self, queries: np.ndarray, k: np.ndarray, spare: int = 8) -> list[np.ndarray]:
        """For many queries at once (a BLAS product per round, the same length bound): positions in
        the length order holding each query's top ``k + spare`` items, unsorted. ``rescore`` ranks a
        shortlist the way ``search`` ranks, so a batch gets ``search``'s answers (the spare rows keep
        an item that a last-bit difference of the batched product would move inside)."""
        queries = np.asarray(queries, dtype=np.float32)
        want = np.minimum(np.asarray(k, dtype=np.int64) + spare, self.n)
        q_norms = np.sqrt(np.einsum("ij,ij->i", queries, queries))
        out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(queries)
        rows = np.flatnonzero((want > 0) & (q_norms > 0) & np.isfinite(q_norms))
        step = max(1, _BATCH_SCORES // max(self.first_block, 2 * int(want.max(initial=0))))
        for part in (rows[i:i + step] for i in range(0, len(rows), step)):
            for r, found in zip(part.tolist(), self._shortlist(queries[part], want[part], q_norms[part]),
                                strict=True):
                out[r] = found
        return out

    def _shortlist(self, q: np.ndarray, want: np.ndarray, q_norms: np.ndarray) -> list[np.ndarray]:
        """``shortlist`` for one batch. Kept per query: a set of ``w`` positions holding its top
        ``want`` read so far; each round reads twice as far, and of the new items only those that
        reach the query's ``want``-th best so far can join."""
        w = int(want.max())
        read = min(self.n, max(self.first_block, 2 * w))
        scores = q @ self.vectors[:read].T
        if w < read:
            top = np.argpartition(-scores, w - 1, axis=1)[:, :w]
        else:
            top = np.broadcast_to(np.arange(read), scores.shape)
        best = np.take_along_axis(scores, top, axis=1)
        out: list[np.ndarray] = [top[0]] * len(q)
        live = np.arange(len(q))
        while True:
            kth = -np.sort(-best, axis=1)[np.arange(len(live)), want[live] - 1]
            settled = np.full(len(live), read >= self.n)
            if read < self.n:  # every unread item scores at most |q| |y| <= the want-th best
                settled = kth >= q_norms[live] * self.norms[read]
            for i in np.flatnonzero(settled).tolist():
                out[int(live[i])] = np.asarray(top[i], dtype=np.int64)
            if settled.all():
                return out
            live, top, best, kth = live[~settled], top[~settled], best[~settled], kth[~settled]
            more = min(self.n, 2 * read)
            fresh = q[live] @ self.vectors[read:more].T
            r, c = np.nonzero(fresh >= kth[:, None])
            if len(r):
                counts = np.bincount(r, minlength=len(live))
                slot = np.arange(len(r)) - (np.cumsum(counts) - counts)[r]
                add_s = np.full((len(live), int(counts.max())), -np.inf, dtype=np.float32)
                add_p = np.zeros(add_s.shape, dtype=np.int64)
                add_s[r, slot], add_p[r, slot] = fresh[r, c], c + read
                scores, positions = np.hstack([best, add_s]), np.hstack([top, add_p])
                pick = np.argpartition(-scores, w - 1, axis=1)[:, :w]
                top, best = np.take_along_axis(positions, pick, 1), np.take_along_axis(scores, pick, 1)
            read = more

    def rescore(self, query: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` (items best first, scores) of a set of positions holding them, as ``search``
        ranks its own: each score on its own (not BLAS, whose last bit depends on the rows around
        one), ties in the length order, so a batch's shortlist and a search give the same answer."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        positions = np.sort(np.asarray(positions, dtype=np.int64))
        scores = np.einsum("ij,j->i", self.vectors[positions], q)
        top = np.argsort(-scores, kind="stable")[:k]
        return self.order[positions[top]], scores[top]


class ServingModel:
    """One bundle version ready to serve."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.version = bundle.version
        items = bundle.items
        self.n_items = len(items)
        self.item_ids = text_array(items.item_id)
        self.item_index = bundle.item_index
        # sorted ids, not a dict: a million-entry dict holds the GIL long enough to stall serving
        self.member_index = IdIndex(bundle.members.member_id, bundle.arrays.get("member_order"))
        self.popular_order = np.argsort(-bundle.popularity_global, kind="stable").astype(np.int32)
        self.trending_order = np.argsort(-bundle.popularity_trending, kind="stable").astype(np.int32)
        self.categories, self.category_of = unique_text(items.category)
        self.category_top = self._category_lists()
        launched = np.flatnonzero(items.launched_at >= 0)
        order = launched[np.argsort(-items.launched_at[launched], kind="stable")]
        self.launch_order = order.astype(np.int32)  # newest first
        self.launch_ts = items.launched_at[order].astype(np.int64)
        self._query_index = build_query_index({f: getattr(items, f) for f in QUERY_FIELD_WEIGHTS})
        # the search box sends the same few queries over and over; the source and the boost share it
        # over the index, not a bound method: a cache holding ``self`` would make the model a
        # reference cycle, freed only by a full GC pass instead of when its last request ends
        self.match_query = lru_cache(maxsize=4096)(partial(match_query, self._query_index))
        # exact search (a flat index, or none) reads only the items that can make the top k; an
        # approximate index the trainer chose (IVF, HNSW) is searched by FAISS as configured
        index = bundle.faiss_index
        self._faiss = None if index is None or type(index).__name__ == "IndexFlatIP" else index
        self._exact = NormPrunedSearch(bundle.item_factors) if self._faiss is None else None
        self._item_factors64 = bundle.item_factors.astype(np.float64)
        self.yty = self._item_factors64.T @ self._item_factors64
        hyper: dict[str, Any] = bundle.manifest.get("hyperparameters", {})
        als = hyper.get("als", {})
        self.regularization = float(als.get("regularization", 0.05))
        self.alpha = float(als.get("alpha", 1.0))
        weighting = hyper.get("weighting", {})
        weights = {**FALLBACK_EVENT_WEIGHTS, **weighting.get("events", {})}
        self.event_weights = np.array([float(weights[e]) for e in EVENT_TYPES])
        half_life = weighting.get("half_life", FALLBACK_HALF_LIFE)
        self.half_life = float(half_life) if half_life else None
        self.log_scale = bool(weighting.get("log_scale", True))
        member_half_life = weighting.get("member_half_life")  # the trainer's member re-solve
        self.member_half_life = float(member_half_life) if member_half_life else None
        self._memo: dict[Hashable, Any] = {}

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """What a component derives from this model alone (a window's factors, a list), built on
        first use and kept with the model, so requests slice it instead of recomputing it. ``key``
        names the component and everything else the value depends on (its parameters)."""
        try:
            return self._memo[key]
        except KeyError:
            return self._memo.setdefault(key, build())

    @classmethod
    def load(cls, models_dir: str | Path) -> ServingModel:
        """Load CURRENT (or a bundle folder); raises BundleError for a bundle that cannot serve."""
        return cls(load(models_dir))

    # ------------------------------------------------------------------ lookups

    def member(self, member_id: str) -> int | None:
        """Internal member index, or None for a member the model has not seen (cold start)."""
        return self.member_index.get(member_id)

    def known_items(self, item_ids: list[str] | tuple[str, ...]) -> list[int]:
        """Internal indices of the ids the model knows (unknown ids are skipped, not errors)."""
        return [i for i in (self.item_index.get(x) for x in item_ids) if i is not None]

    def history(self, member: int | None) -> slice:
        return self.bundle.history(member) if member is not None else slice(0, 0)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by inner product with ``vector``: exact (length-pruned, see NormPrunedSearch)
        unless the bundle carries an approximate FAISS index (IVF, HNSW). A zero vector finds nothing."""
        k = min(k, self.n_items)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self._exact is not None:
            items, scores, _ = self._exact.search(vector, k)
            return items, scores
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if not np.any(query):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        assert self._faiss is not None  # __init__ sets one of the two searches
        scores, items = self._faiss.search(query, k)
        keep = items[0] >= 0
        return items[0][keep].astype(np.int64), scores[0][keep]

    def search_many(self, vectors: np.ndarray, k: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``search`` for many vectors at once, the i-th with its own ``k[i]`` (the trainer's pools):
        the same answers, from one batched scan when the search is the exact one."""
        k = np.minimum(np.asarray(k, dtype=np.int64), self.n_items)
        if self._exact is None:
            return [self.search(v, int(n)) for v, n in zip(vectors, k.tolist(), strict=True)]
        short = self._exact.shortlist(vectors, k)
        return [self._exact.rescore(v, s, n) for v, s, n in zip(vectors, short, k.tolist(), strict=True)]

    def fold_in(self, items: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """ALS closed form for one member given item factors Y (as implicit computes it):
        x = (YᵀY + λI + Σ (c_i - 1) y_i y_iᵀ)⁻¹ Σ c_i y_i, with c_i = alpha · confidence_i."""
        y = self._item_factors64[items]
        c = self.alpha * np.asarray(confidence, dtype=np.float64)
        a = self.yty + self.regularization * np.eye(self.yty.shape[0]) + (y.T * (c - 1.0)) @ y
        b = y.T @ c
        return np.linalg.solve(a, b).astype(np.float32)

    def decayed(self, weight: np.ndarray, age: np.ndarray, half_life: float | None = None) -> np.ndarray:
        """Event weights halved every half-life of age (seconds), as the trainer decays them
        (``half_life`` None: the model's)."""
        w = np.asarray(weight, dtype=np.float64)
        half_life = half_life or self.half_life
        if not half_life:
            return w
        return w * np.exp2(-np.maximum(np.asarray(age, dtype=np.float64), 0) / half_life)

    def squash(self, weight: np.ndarray) -> np.ndarray:
        """Summed weights of a member-item pair -> ALS confidence (the trainer's log scaling)."""
        return np.log1p(weight) if self.log_scale else np.asarray(weight, dtype=np.float64)

    # ------------------------------------------------------------------ built at load

    def _category_lists(self) -> list[np.ndarray]:
        by_category = np.argsort(self.category_of[self.popular_order], kind="stable")
        ordered = self.popular_order[by_category]  # grouped by category, popular first in each
        bounds = np.searchsorted(self.category_of[ordered], np.arange(len(self.categories) + 1))
        return [ordered[bounds[c]:min(bounds[c + 1], bounds[c] + CATEGORY_LIST_SIZE)]
                for c in range(len(self.categories))]
