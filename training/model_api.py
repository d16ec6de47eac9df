"""The small model API every recommender in training shares (shaped like `implicit`'s).

    model.fit(dataset, matrix) -> model
    model.score(members) -> dense [len(members), n_items] scores
    model.recommend(members, n, exclude) -> (items [len, n], scores [len, n])
    model.similar(items, n) -> (items [len, n], scores [len, n])

Only `fit` and `score` differ between models; ranking, exclusion of already-seen items and batching
live here once, so evaluation treats every model the same way.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from training.dataset import Dataset


class Model:
    name: str = "model"
    batch_size: int = 2048

    def fit(self, ds: Dataset, matrix: sp.csr_matrix) -> Self:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, members: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def recommend(self, members: np.ndarray, n: int,
                  exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items per member over the whole catalogue; items in ``exclude`` rows never appear.

        Rows shorter than n (tiny catalogues) are padded with item -1 and score -inf.
        """
        members = np.asarray(members, dtype=np.int64)
        out_items = np.full((len(members), n), -1, dtype=np.int64)
        out_scores = np.full((len(members), n), -np.inf, dtype=np.float32)
        for start in range(0, len(members), self.batch_size):
            batch = members[start:start + self.batch_size]
            scores = np.array(self.score(batch), dtype=np.float32, copy=True)
            if exclude is not None:
                rows = exclude[batch]
                scores[np.repeat(np.arange(len(batch)), np.diff(rows.indptr)), rows.indices] = -np.inf
            items, top = top_n(scores, n)
            out_items[start:start + len(batch), :items.shape[1]] = items
            out_scores[start:start + len(batch), :items.shape[1]] = top
        out_items[~np.isfinite(out_scores)] = -1
        return out_items, out_scores

    def similar(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(f"{self.name} has no item similarity")


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a dense score matrix, best first (argpartition, then a small sort)."""
    n = min(n, scores.shape[1])
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def standardise(scores: np.ndarray) -> np.ndarray:
    """Per-row z-score so models on different scales can be blended."""
    finite = np.where(np.isfinite(scores), scores, np.nan)
    mean = np.nanmean(finite, axis=1, keepdims=True)
    std = np.nanstd(finite, axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


class Blend(Model):
    """Weighted blend of standardised scores of already-fitted models (e.g. ALS + popularity)."""

    def __init__(self, name: str, parts: list[tuple[Model, float]]):
        self.name = name
        self.parts = parts

    def fit(self, ds: Dataset, matrix: sp.csr_matrix) -> Self:
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        total: np.ndarray | None = None
        for model, weight in self.parts:
            part = weight * standardise(model.score(members).astype(np.float32))
            total = part if total is None else total + part
        if total is None:
            raise ValueError(f"blend {self.name!r} has no parts")
        return total
