"""Popularity models: global (time-decayed), per category (member's categories), trending.

They are the cold-start backbone of every slot and the baseline ALS must beat.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from training.config import PopularityConfig, Weighting
from training.dataset import Dataset, decay, trending_has_history
from training.model_api import Model


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
        # member x category affinity from the confidence matrix
        cat_of = sp.csr_matrix((np.ones(ds.n_items, dtype=np.float32), (np.arange(ds.n_items), codes)),
                               shape=(ds.n_items, len(self.categories)))
        affinity = (matrix @ cat_of).tocsr()
        totals = np.asarray(affinity.sum(axis=1)).ravel()
        self.affinity = sp.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ affinity
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        share = self.affinity[members].toarray()[:, self.item_category]  # [b, n_items]
        return share * self.pop + 1e-3 * self.pop


def _category_codes(category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cats, codes = np.unique(category.astype(str), return_inverse=True)
    return codes.astype(np.int64), cats
