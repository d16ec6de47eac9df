"""Items similar to seed items, from the bundle's item-neighbour lists.

Two seeds, two sources: what the member touched lately (``similar_recent``) and the order just
delivered (``similar_order``). The SimilarItems RPC uses the same lookup with one seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.candidates import top
from service.engine.query import SlotQuery
from service.engine.slate import Found
from service.model import ServingModel


def neighbours(model: ServingModel, seeds: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of ``seeds`` (never the seeds), score = sum of weight x similarity."""
    seeds = np.asarray(seeds, dtype=np.int64)
    if len(seeds) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    nb = model.bundle.neighbour_items[seeds].astype(np.int64)
    contrib = model.bundle.neighbour_scores[seeds] * np.asarray(weights, dtype=np.float64)[:, None]
    keep = (nb >= 0) & ~np.isin(nb, seeds)
    items, inverse = np.unique(nb[keep], return_inverse=True)
    return items, np.bincount(inverse, weights=contrib[keep], minlength=len(items))


def strongest_seed(model: ServingModel, seeds: np.ndarray, weights: np.ndarray, item: int) -> int:
    """The seed that contributed most to ``item``'s score (the first of equals), for its reason."""
    nb = model.bundle.neighbour_items[seeds]
    scores = model.bundle.neighbour_scores[seeds] * np.asarray(weights)[:, None]
    contrib = np.where(nb == item, scores, -np.inf)
    return int(seeds[int(np.argmax(contrib.max(axis=1)))])


def similar(q: SlotQuery, seeds: np.ndarray, weights: np.ndarray, n: int, why: str) -> Found:
    """The top ``n`` neighbours of ``seeds``; ``why`` names the strongest seed ("{seed}")."""
    items, scores = neighbours(q.model, seeds, weights)
    found, values = top(items, scores, n)
    ids = q.model.item_ids
    return Found(found, values,
                 lambda k: why.format(seed=ids[strongest_seed(q.model, seeds, weights, int(found[k]))]))


@dataclass
class SimilarToRecent:
    name: str = "similar_recent"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        seeds, weights = q.profile.seeds
        return similar(q, seeds, weights, n, "similar to {seed} you looked at lately")


@dataclass
class SimilarToOrder:
    name: str = "similar_order"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        seeds = np.array(q.model.known_items(q.context.order_item_ids), dtype=np.int64)
        return similar(q, seeds, np.ones(len(seeds)), n, "goes with {seed} in your order")
