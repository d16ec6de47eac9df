"""Because you liked X: RP3beta's item-to-item model (the bundle's ``liked_*`` arrays, W as CSR).

A member's items h, with the confidence the profile gives them (bundle history weighted like the
trainer's matrix, plus fresh events, decayed and squashed: ``MemberProfile.interactions``), score
every arrival j as sum_h conf_h x W[h, j], the trainer's RP3beta score restricted to the member's
latest ``MAX_ITEMS`` items. The member's own items are never brought (W has no diagonal, and an item
already touched is not a discovery). The reason names the h that gave the row most of its score.
A bundle without the arrays (trained with the item model off or skipped, or older) brings nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.candidates import top
from service.engine.query import SlotQuery
from service.engine.slate import Found
from service.filters import not_in
from service.model import ServingModel

#: The member's latest items that seed the score: bounds a heavy member's request to MAX_ITEMS rows
#: of W (at most item_model.k entries each).
MAX_ITEMS = 200


def arrivals(model: ServingModel, seeds: np.ndarray, conf: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of W for ``seeds`` as entries: (seed position, arrival item, conf x W); empty when
    the bundle has no item model."""
    b = model.bundle
    if not b.has_liked or not len(seeds):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    indptr = b.liked_indptr
    starts, lengths = indptr[seeds], indptr[seeds + 1] - indptr[seeds]
    at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    seed_at = np.repeat(np.arange(len(seeds)), lengths)
    return seed_at, b.liked_indices[at].astype(np.int64), \
        b.liked_scores[at].astype(np.float64) * np.asarray(conf, np.float64)[seed_at]


@dataclass
class BecauseYouLiked:
    name: str = "liked"

    def fetch(self, q: SlotQuery, n: int) -> Found:
        items, conf, _ = q.profile.interactions  # newest first
        seeds, conf = items[:MAX_ITEMS], conf[:MAX_ITEMS]
        seed_at, item, contrib = arrivals(q.model, seeds, conf)
        keep = not_in(item, items)
        seed_at, item, contrib = seed_at[keep], item[keep], contrib[keep]
        if not len(item):
            return Found.none()
        found, inverse = np.unique(item, return_inverse=True)
        found, values = top(found, np.bincount(inverse, weights=contrib, minlength=len(found)), n)
        ids = q.model.item_ids
        best: list[np.ndarray] = []

        def explain(k: int) -> str:
            if not best:  # worked out once, the first time a served row is explained
                order = np.lexsort((-contrib, item))  # per arrival, strongest contribution first
                first = np.r_[True, item[order][1:] != item[order][:-1]]
                strongest = seed_at[order][first]  # per distinct arrival, ascending
                best.append(seeds[strongest[np.searchsorted(item[order][first], found)]])
            return f"because you liked {ids[best[0][k]]}"

        return Found(found, values, explain)

    def remark(self, q: SlotQuery) -> str:
        """The trace's note when the bundle cannot feed this source."""
        if q.model.bundle.has_liked:
            return ""
        skipped = (q.model.bundle.manifest.get("item_model") or {}).get("skipped")
        return f"no item model in bundle {q.model.version}" + (f" ({skipped})" if skipped else "")
