"""Items similar to seed items, from the bundle's item-neighbour lists.

Two seeds, two sources: what the member touched lately (``similar_recent``) and the order just
delivered (``similar_order``). The SimilarItems RPC uses the same lookup with one seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.model import ServingModel
from tests.reference_engine.candidates import candidates
from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery


def neighbours(model: ServingModel, seeds: np.ndarray, weights: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Neighbours of ``seeds`` (never the seeds), score = sum of weight x similarity, and for each
    item the seed that contributed most (for the reason)."""
    seeds = np.asarray(seeds, dtype=np.int64)
    if len(seeds) == 0:
        return np.zeros(0, np.int64), np.zeros(0), {}
    nb = model.bundle.neighbour_items[seeds].astype(np.int64)
    contrib = model.bundle.neighbour_scores[seeds] * np.asarray(weights, dtype=np.float64)[:, None]
    seed_of = np.broadcast_to(seeds[:, None], nb.shape)
    keep = (nb >= 0) & ~np.isin(nb, seeds)
    nb, contrib, seed_of = nb[keep], contrib[keep], seed_of[keep]
    items, inverse = np.unique(nb, return_inverse=True)
    total = np.bincount(inverse, weights=contrib, minlength=len(items))
    order = np.lexsort((-contrib, inverse))  # per item, strongest contribution first
    first = np.ones(len(order), dtype=bool)
    first[1:] = inverse[order][1:] != inverse[order][:-1]
    best_seed = dict(zip(items[inverse[order][first]].tolist(), seed_of[order][first].tolist(), strict=True))
    return items, total, best_seed


@dataclass
class SimilarToRecent:
    name: str = "similar_recent"

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
        seeds, weights = q.profile.seeds
        items, scores, best = neighbours(q.model, seeds, weights)
        ids = q.model.item_ids
        return candidates(self.name, items, scores, n,
                          lambda i, s: f"similar to {ids[best[i]]} you looked at lately")


@dataclass
class SimilarToOrder:
    name: str = "similar_order"

    def fetch(self, q: SlotQuery, n: int) -> list[Candidate]:
        seeds = np.array(q.model.known_items(q.context.order_item_ids), dtype=np.int64)
        items, scores, best = neighbours(q.model, seeds, np.ones(len(seeds)))
        ids = q.model.item_ids
        return candidates(self.name, items, scores, n,
                          lambda i, s: f"goes with {ids[best[i]]} in your order")
