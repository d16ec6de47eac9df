"""Popularity: global (time-decayed), trending (recent growth) and per category.

The orderings are computed once when the bundle loads (ServingModel), so fetching is a slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.reference_engine.candidates import candidates, make, top
from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery


@dataclass
class Popular:
    name: str = "popular"

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
        items = q.model.popular_order[:n]
        scores = q.model.bundle.popularity_global[items]
        return candidates(self.name, items, scores, n, lambda i, s: "popular in the mall")


@dataclass
class Trending:
    name: str = "trending"

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
        items = q.model.trending_order[:n]
        scores = q.model.bundle.popularity_trending[items]
        return candidates(self.name, items, scores, n, lambda i, s: "trending now")


@dataclass
class PopularInCategory:
    """Popular items in the categories of the order on the page, else of the member's recent items."""

    name: str = "category_popular"

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
        model = q.model
        seeds = np.array(model.known_items(q.context.order_item_ids), dtype=np.int64)
        weights = np.ones(len(seeds))
        if len(seeds) == 0:
            seeds, weights = q.profile.seeds
        if len(seeds) == 0:
            return []
        cats = model.category_of[seeds]
        share = np.bincount(cats, weights=weights, minlength=len(model.categories))
        pop = model.bundle.popularity_global
        parts_items, parts_scores = [], []
        for cat in np.flatnonzero(share > 0):
            leaders = model.category_top[cat][:n]
            if len(leaders) and model.categories[cat] != "":
                parts_items.append(leaders)
                peak = max(float(pop[leaders[0]]), 1e-9)
                parts_scores.append(share[cat] / share.sum() * pop[leaders] / peak)
        if not parts_items:
            return []
        best, values = top(np.concatenate(parts_items), np.concatenate(parts_scores), n)
        names = model.categories[model.category_of[best]].tolist()
        return make(self.name, best, values, [f"popular in {name}" for name in names])
