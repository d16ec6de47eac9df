"""Candidate pools for re-ranker training and evaluation, made by the service's own slate engine.

A `FirstStage` (the arrays a bundle would carry, fitted before the cutoff) becomes a
``service.model.ServingModel``, and each member's pool is the "for you" slot the config describes
(``reranker.sources``: the sources and their blend weights) run through ``service.engine.run``,
with the slot's filters, at the first stage's clock and with no online state. The member's own items
are left out as a page leaves out items already placed (``reranker.exclude_seen``). So the model is
trained on the candidates the service would put in front of it, not on a copy of the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from service.domain import OnlineState
from service.engine.query import SlotQuery
from service.engine.run import arrange
from service.model import ServingModel
from service.model_bundle import Bundle, ItemTable, MemberTable
from service.profile import SEEDS, MemberProfile
from service.rerank.features import Candidates, FeatureContext
from service.slots import SlotRecipe, build_recipe
from service.steps.rerank import batch
from training.config import TrainConfig

__all__ = ["SEEDS", "FirstStage", "PoolMaker", "for_you", "serving_model"]

SLOT = "for_you"


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


def for_you(config: TrainConfig) -> SlotRecipe:
    """The slot a pool is: the config's sources and weights, no backfill, ``n`` per source (+ the
    member's own items, which it leaves out) for a pool of ``n``."""
    weights = {k: v for k, v in config.reranker.sources.items() if v > 0}
    return build_recipe(SLOT, {"sources": [{"use": k, "weight": v} for k, v in weights.items()],
                               "backfill": None, "pool": 1})


def serving_model(fs: FirstStage, config: TrainConfig, members: MemberTable | None = None) -> ServingModel:
    """The first stage as the service would load it (no FAISS index: the exact search). Members
    without a table get their index as id (zero-padded, so the ids are already in sorted order)."""
    arrays = dict(fs.arrays)
    if members is None:
        n = len(fs.member_factors)
        width = len(str(max(n - 1, 0)))
        members = MemberTable(np.array([f"{m:0{width}d}" for m in range(n)], dtype=object),
                              np.full(n, "", dtype=object), np.full(n, np.nan))
        arrays["member_order"] = np.arange(n, dtype=np.int64)
    manifest = {"version": "first-stage", "hyperparameters": config.model_dump(mode="json")}
    return ServingModel(Bundle(manifest=manifest, items=fs.items, members=members, arrays=arrays))


class _PoolProfile(MemberProfile):
    """A member as one pool sees them: no page shares the taste search (the service rounds it up
    so a page's slots share one), so it asks for exactly the items the pool needs, the same first
    ``k`` items at less cost; ``found`` is that answer when the batch already searched for it."""

    def __init__(self, model: ServingModel, now: float, index: int,
                 found: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__(model, "", OnlineState(), now, index=index)
        self.found = found

    def nearest(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.found is not None and k <= len(self.found[0]):
            return self.found[0][:k], self.found[1][:k]
        vector = self.vector
        if vector is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return self.model.search(vector, k)


class PoolMaker:
    """Pools through the service's engine, one member at a time, with the taste search of a batch
    of members done at once (one batched exact search gives each member the items its own would)."""

    batch = 256  # members whose taste search runs as one

    def __init__(self, fs: FirstStage, config: TrainConfig, model: ServingModel | None = None) -> None:
        self.fs, self.config = fs, config
        self.model = model or serving_model(fs, config)
        self.recipe = for_you(config)
        self.searches = any(use.source.name == "als" for use in self.recipe.sources)

    def pools(self, members: np.ndarray, n: int) -> Iterator[tuple[int, Candidates]]:
        """(member, blended candidate batch of at most n items) for each member, in order."""
        members = np.asarray(members, dtype=np.int64)
        for start in range(0, len(members), self.batch):
            part = members[start:start + self.batch]
            excludes = [self._exclude(m) for m in part.tolist()]
            found: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(part)
            if self.searches:  # what the "als" source asks for: the slot's fetch size (run.arrange)
                want = np.array([self.recipe.pool * n + len(e) for e in excludes], dtype=np.int64)
                vectors = self.model.bundle.member_factors[part]
                found = list(self.model.search_many(vectors, want))
            for m, exclude, hit in zip(part.tolist(), excludes, found, strict=True):
                yield m, self._pool(m, n, exclude, hit)

    def pool(self, m: int, n: int) -> Candidates:
        return self._pool(m, n, self._exclude(m), None)

    def _exclude(self, m: int) -> frozenset[int]:
        if not self.config.reranker.exclude_seen:
            return frozenset()
        seen = self.fs.seen
        return frozenset(seen.indices[seen.indptr[m]:seen.indptr[m + 1]].tolist())

    def _pool(self, m: int, n: int, exclude: frozenset[int],
              found: tuple[np.ndarray, np.ndarray] | None) -> Candidates:
        profile = _PoolProfile(self.model, self.fs.now, m, found)
        q = SlotQuery(self.model, profile, SLOT, n, exclude=exclude, filters=self.recipe.filters, trace=False)
        slate, _ = arrange(self.recipe, q, top=True)
        return batch(slate, slate.order[:n])
