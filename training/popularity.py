"""Popularity models: global (time-decayed), per category (member's categories), trending.

They are the cold-start backbone of every slot and the baseline ALS must beat.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from training.config import PopularityConfig, Weighting
from training.dataset import Dataset, decay, trending_has_history
from training.model_api import Model, exclusion_keys, row_stats, top_plain

#: Candidate cells one category popularity batch may hold.
CELLS = 1 << 24


def global_popularity(ds: Dataset, weighting: Weighting, half_life: float | None) -> np.ndarray:
    """Per item: sum of event weights, decayed by age from the data's newest event."""
    ev = ds.events
    w = np.asarray(weighting.events.as_array(), dtype=np.float64)[ev.event]
    if half_life:
        w = w * decay(ev, half_life, "global", ds.n_members)
    return np.bincount(ev.item, weights=w, minlength=ds.n_items).astype(np.float32)


def trending_scores(ds: Dataset, weighting: Weighting, cfg: PopularityConfig) -> np.ndarray:
    """Recent-window volume times its growth over the item's earlier rate (smoothed).

    score = recent * (recent + prior) / (expected + prior), where expected is the item's earlier
    weighted volume scaled to the window's length. A steady best-seller scores its volume; an item
    surging from nothing scores much higher; a fading one lower. When no event is older than the
    window (no clock, or a short one), it is the items' weighted volume: plain popularity.
    """
    ev = ds.events
    if len(ev) == 0:
        return np.zeros(ds.n_items, dtype=np.float32)
    w = np.asarray(weighting.events.as_array(), dtype=np.float64)[ev.event]
    now, start = int(ev.ts.max()), int(ev.ts.min())
    window = cfg.trending_window or 86400.0
    if not trending_has_history(ev, window):  # every event is "recent": no earlier rate to grow from
        return np.bincount(ev.item, weights=w, minlength=ds.n_items).astype(np.float32)
    recent_mask = ev.ts > now - window
    recent = np.bincount(ev.item[recent_mask], weights=w[recent_mask], minlength=ds.n_items)
    before = np.bincount(ev.item[~recent_mask], weights=w[~recent_mask], minlength=ds.n_items)
    span_before = max(now - window - start, window)
    expected = before * (window / span_before)
    p = cfg.trending_prior
    return (recent * (recent + p) / (expected + p)).astype(np.float32)


class GlobalPopularity(Model):
    name = "popularity"
    scores: np.ndarray  # one per item, set by fit

    def __init__(self, weighting: Weighting, cfg: PopularityConfig):
        self.weighting, self.cfg = weighting, cfg

    def fit(self, ds: Dataset, matrix: sp.csr_matrix) -> Self:
        self.scores = global_popularity(ds, self.weighting, self.cfg.half_life)
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(members), len(self.scores)))

    def recommend(self, members: np.ndarray, n: int,
                  exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One global order (score desc, then item code) for everyone: each member's top n are the
        first n items of it that are not in their ``exclude`` row."""
        order = np.lexsort((np.arange(len(self.scores)), -self.scores))
        items = ordered_top(order, np.asarray(members, dtype=np.int64), n, exclude)
        scores = np.where(items >= 0, self.scores[np.maximum(items, 0)], -np.inf).astype(np.float32)
        return items, scores

    def score_items(self, members: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.where(items >= 0, self.scores[np.maximum(items, 0)], -np.inf).astype(np.float32)

    def score_stats(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = row_stats(self.scores[None, :].astype(np.float32))
        return np.repeat(mean, len(members)), np.repeat(std, len(members))


def ordered_top(order: np.ndarray, members: np.ndarray, n: int, exclude: sp.csr_matrix | None) -> np.ndarray:
    """Per member, the first n items of ``order`` not in their ``exclude`` row (padded with -1).

    With a member's excluded positions in the order sorted, b_0 < b_1 < ..., their j-th free
    position is j + #{i: b_i - i <= j}: one sorted search for all members, nothing per item."""
    out = np.full((len(members), n), -1, dtype=np.int64)
    if len(members) == 0 or n == 0 or len(order) == 0:
        return out
    place = np.empty(len(order), dtype=np.int64)
    place[order] = np.arange(len(order))
    if exclude is None:
        blocked = np.zeros(0, dtype=np.int64)
        rows = np.zeros(0, dtype=np.int64)
    else:
        ex = exclude[members]
        rows = np.repeat(np.arange(len(members), dtype=np.int64), np.diff(ex.indptr))
        blocked = place[ex.indices]
        sort = np.lexsort((blocked, rows))
        rows, blocked = rows[sort], blocked[sort]
    starts = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(members)))]
    span = len(order) + n + 1  # keeps each member's keys apart
    gaps = rows * span + (blocked - (np.arange(len(rows)) - starts[rows]))  # b_i - i, per member
    j = np.arange(n, dtype=np.int64)
    wanted = np.arange(len(members), dtype=np.int64)[:, None] * span + j
    before = np.searchsorted(gaps, wanted, side="right") - starts[:-1, None]
    pos = j + before
    found = pos < len(order)
    out[found] = order[pos[found]]
    return out


class TrendingPopularity(GlobalPopularity):
    name = "trending"

    def fit(self, ds: Dataset, matrix: sp.csr_matrix) -> Self:
        self.scores = trending_scores(ds, self.weighting, self.cfg)
        return self


class CategoryPopularity(Model):
    """Popular items of the categories a member engages with: score = share(category) x popularity.

    Members with no history, and items with no category, fall back to a small global term so the
    ranking stays total.
    """

    name = "popularity_category"

    def __init__(self, weighting: Weighting, cfg: PopularityConfig):
        self.weighting, self.cfg = weighting, cfg

    def fit(self, ds: Dataset, matrix: sp.csr_matrix) -> Self:
        codes, self.categories = _category_codes(ds.items.category)
        self.item_category = codes
        pop = global_popularity(ds, self.weighting, self.cfg.half_life)
        self.pop = pop / (pop.max() or 1.0)
        self.floor = 1e-3 * self.pop  # float32: the small global term every item gets
        # popularity order overall and within each category (ties: lower item code first)
        self.order = np.lexsort((np.arange(ds.n_items), -self.pop))
        self.place = np.empty(ds.n_items, dtype=np.int64)
        self.place[self.order] = np.arange(ds.n_items)
        self.category_order = self.order[np.argsort(codes[self.order], kind="stable")]
        self.category_ptr = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(self.categories)))]
        # member x category affinity from the confidence matrix
        cat_of = sp.csr_matrix((np.ones(ds.n_items, dtype=np.float32), (np.arange(ds.n_items), codes)),
                               shape=(ds.n_items, len(self.categories)))
        affinity = (matrix @ cat_of).tocsr()
        totals = np.asarray(affinity.sum(axis=1)).ravel()
        self.affinity = sp.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ affinity
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        share = self.affinity[members].toarray()[:, self.item_category]  # [b, n_items]
        return share * self.pop + self.floor

    def score_items(self, members: np.ndarray, items: np.ndarray) -> np.ndarray:
        it = np.maximum(items, 0)
        share = np.take_along_axis(self.affinity[members].toarray(), self.item_category[it], axis=1)
        return np.where(items >= 0, share * self.pop[it] + self.floor[it], -np.inf).astype(np.float32)

    def recommend(self, members: np.ndarray, n: int,
                  exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Within a category the order is popularity's, so a member's top n lie in the heads of
        the popularity order of each category they engage with and of the whole catalogue (for
        items of their other categories): those heads are scored, not every item."""
        members = np.asarray(members, dtype=np.int64)
        n_items, n_cats = len(self.pop), len(self.categories)
        out_items = np.full((len(members), n), -1, dtype=np.int64)
        out_scores = np.full((len(members), n), -np.inf, dtype=np.float32)
        if n == 0 or len(members) == 0:
            return out_items, out_scores
        step = max(1, CELLS // (8 * max(n, n_cats)))  # the batch's dense category shares
        for start in range(0, len(members), step):
            batch = members[start:start + step]
            rows, items, pos, room = self._candidates(batch, n, exclude)
            share = self.affinity[batch].toarray()
            scores = (share[rows, self.item_category[items]] * self.pop[items] + self.floor[items])
            scores = scores.astype(np.float32)
            keys = exclusion_keys(exclude, batch, n_items)
            if keys is not None and len(keys):
                at = np.minimum(np.searchsorted(keys, rows * n_items + items), len(keys) - 1)
                scores[keys[at] == rows * n_items + items] = -np.inf
            packed = np.full((len(batch), max(room, n)), -np.inf, dtype=np.float32)
            packed_items = np.full(packed.shape, -1, dtype=np.int64)
            packed[rows, pos], packed_items[rows, pos] = scores, items
            top_items, top = top_plain(packed, packed_items, n)
            out_items[start:start + len(batch)], out_scores[start:start + len(batch)] = top_items, top
        out_items[~np.isfinite(out_scores)] = -1
        return out_items, out_scores

    def _candidates(self, batch: np.ndarray, n: int, exclude: sp.csr_matrix | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(batch row, item, column in the row, row width) of each candidate, each item once a
        row: per member, n + (their excluded items) from the global order, and per category they
        engage with, n + (their excluded items in it) from its order, less what the first holds."""
        b = len(batch)
        n_cats = len(self.categories)
        seen_rows = np.zeros(0, dtype=np.int64)
        seen_items = np.zeros(0, dtype=np.int64)
        if exclude is not None:
            ex = exclude[batch]
            seen_rows = np.repeat(np.arange(b), np.diff(ex.indptr))
            seen_items = ex.indices.astype(np.int64)
        head = np.minimum(n + np.bincount(seen_rows, minlength=b), len(self.order))
        aff = self.affinity[batch].tocsr().tocoo()  # row-sorted pairs
        engaged = aff.data > 0
        pair_rows, pair_cats = aff.row[engaged].astype(np.int64), aff.col[engaged].astype(np.int64)
        seen_keys, seen_counts = np.unique(seen_rows * n_cats + self.item_category[seen_items],
                                           return_counts=True)
        pair_keys = pair_rows * n_cats + pair_cats
        at = np.minimum(np.searchsorted(seen_keys, pair_keys), max(len(seen_keys) - 1, 0))
        seen_pair = np.where(seen_keys[at] == pair_keys, seen_counts[at], 0) if len(seen_keys) else \
            np.zeros(len(pair_keys), dtype=np.int64)
        take = np.minimum(n + seen_pair, np.diff(self.category_ptr)[pair_cats])
        cat_rows = np.repeat(pair_rows, take)
        cat_items = self.category_order[np.repeat(self.category_ptr[pair_cats], take) + _ranges(take)]
        fresh = self.place[cat_items] >= head[cat_rows]  # not already in the member's global head
        cat_rows, cat_items = cat_rows[fresh], cat_items[fresh]
        cat_count = np.bincount(cat_rows, minlength=b)
        cat_pos = head[cat_rows] + _ranges(cat_count)
        rows = np.concatenate([np.repeat(np.arange(b), head), cat_rows])
        items = np.concatenate([self.order[_ranges(head)], cat_items])
        pos = np.concatenate([_ranges(head), cat_pos])
        return rows, items, pos, int((head + cat_count).max(initial=0))


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """0..len-1 for each length, concatenated."""
    total = int(lengths.sum())
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    return np.arange(total) - np.repeat(starts, lengths)


def _category_codes(category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cats, codes = np.unique(category.astype(str), return_inverse=True)
    return codes.astype(np.int64), cats
