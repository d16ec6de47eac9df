"""Popularity: global (time-decayed), trending (recent growth) and per category.

The orderings are computed once when the bundle loads (ServingModel), so fetching is a slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.candidates import best, same, top
from service.engine.query import SlotQuery
from service.engine.slate import Found


@dataclass
class Popular:
    name: str = "popular"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        items = q.model.popular_order[:n]
        return best(items, q.model.bundle.popularity_global[items], n, same("popular in the mall"))


@dataclass
class Trending:
    name: str = "trending"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        items = q.model.trending_order[:n]
        return best(items, q.model.bundle.popularity_trending[items], n, same("trending now"))


@dataclass
class PopularInCategory:
    """Popular items in the categories of the order on the page, else of the member's recent items."""

    name: str = "category_popular"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        model = q.model
        seeds = np.array(model.known_items(q.context.order_item_ids), dtype=np.int64)
        weights = np.ones(len(seeds))
        if len(seeds) == 0:
            seeds, weights = q.profile.seeds
        if len(seeds) == 0:
            return Found.none()
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
            return Found.none()
        items, values = top(np.concatenate(parts_items), np.concatenate(parts_scores), n)
        names = model.categories
        of = model.category_of
        return Found(items, values, lambda k: f"popular in {names[of[items[k]]]}")
