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
from service.filters import not_in
from service.model import ServingModel


def neighbours(model: ServingModel, seeds: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of ``seeds`` (never the seeds), score = sum of weight x similarity."""
    seeds = np.asarray(seeds, dtype=np.int64)
    if len(seeds) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    nb = model.bundle.neighbour_items[seeds].astype(np.int64)
    contrib = model.bundle.neighbour_scores[seeds] * np.asarray(weights, dtype=np.float64)[:, None]
    keep = (nb >= 0) & not_in(nb.ravel(), seeds).reshape(nb.shape)
    items, inverse = np.unique(nb[keep], return_inverse=True)
    return items, np.bincount(inverse, weights=contrib[keep], minlength=len(items))


def strongest_seeds(model: ServingModel, seeds: np.ndarray, weights: np.ndarray,
                    items: np.ndarray) -> np.ndarray:
    """For each of ``items`` (neighbours of ``seeds``), the seed that contributed most to its score
    (the first of equals), for its reason."""
    seeds = np.asarray(seeds, dtype=np.int64)
    nb = model.bundle.neighbour_items[seeds].astype(np.int64)
    contrib = model.bundle.neighbour_scores[seeds] * np.asarray(weights, dtype=np.float64)[:, None]
    seed_of = np.broadcast_to(seeds[:, None], nb.shape)
    keep = ~not_in(nb.ravel(), items).reshape(nb.shape)
    nb, contrib, seed_of = nb[keep], contrib[keep], seed_of[keep]
    order = np.lexsort((-contrib, nb))  # per item, strongest contribution first
    first = np.ones(len(order), dtype=bool)
    first[1:] = nb[order][1:] != nb[order][:-1]
    found, best = nb[order][first], seed_of[order][first]
    return best[np.searchsorted(found, items)]


def similar(q: SlotQuery, seeds: np.ndarray, weights: np.ndarray, n: int, why: str) -> Found:
    """The top ``n`` neighbours of ``seeds``; ``why`` names the strongest seed ("{seed}"), worked out
    for all of them the first time a reason is asked for (only served rows are explained)."""
    items, scores = neighbours(q.model, seeds, weights)
    found, values = top(items, scores, n)
    ids = q.model.item_ids
    best: list[np.ndarray] = []

    def explain(k: int) -> str:
        if not best:
            best.append(strongest_seeds(q.model, seeds, weights, found))
        return why.format(seed=ids[best[0][k]])

    return Found(found, values, explain)


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
