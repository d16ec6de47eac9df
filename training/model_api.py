"""The small model API every recommender in training shares (shaped like `implicit`'s).

    model.fit(dataset, matrix) -> model
    model.score(members) -> dense [len(members), n_items] scores
    model.recommend(members, n, exclude) -> (items [len, n], scores [len, n])
    model.similar(items, n) -> (items [len, n], scores [len, n])

A model needs only `fit` and `score`: ranking (batched, exclusions, top-n), the scores of given
items and each member's score mean/std (what a blend standardises with) have generic versions here
built on `score`. A model with structure overrides them to skip the dense scores (popularity ranks
from one global order, ALS computes a member's mean/std from its factors).
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from training.dataset import Dataset

#: Memory one batch of dense float32 scores may take: rows per batch = this // (4 x n_items).
BATCH_BYTES = 64 << 20
#: A blend's deepest candidate lists before a member it cannot bound is ranked over every item.
DEEPEST = 800


def batch_rows(width: int, most: int) -> int:
    """Members per dense batch of ``width`` scores: bounded by BATCH_BYTES and ``most``."""
    return max(1, min(most, BATCH_BYTES // (4 * max(width, 1))))


class Model:
    name: str = "model"
    batch_size: int = 4096  # at most this many members per dense batch (fewer for big catalogues)

    def fit(self, ds: Dataset, matrix: sp.csr_matrix) -> Self:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, members: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def recommend(self, members: np.ndarray, n: int,
                  exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items per member over the whole catalogue, best first; items in ``exclude`` rows
        never appear. Rows shorter than n (tiny catalogues) are padded with item -1 and score -inf."""
        members = np.asarray(members, dtype=np.int64)
        out_items = np.full((len(members), n), -1, dtype=np.int64)
        out_scores = np.full((len(members), n), -np.inf, dtype=np.float32)
        start, step = 0, min(self.batch_size, 256)  # the first batch tells the catalogue's width
        while start < len(members):
            batch = members[start:start + step]
            scores = np.asarray(self.score(batch), dtype=np.float32)
            if not (scores.flags.writeable and scores.flags.owndata):  # never write into a model's arrays
                scores = scores.copy()
            if exclude is not None:
                mask_rows(scores, exclude, batch)
            items, top = top_n(scores, n)
            out_items[start:start + len(batch), :items.shape[1]] = items
            out_scores[start:start + len(batch), :items.shape[1]] = top
            start += len(batch)
            step = batch_rows(scores.shape[1], self.batch_size)
        out_items[~np.isfinite(out_scores)] = -1
        return out_items, out_scores

    def score_items(self, members: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``items[i]``'s scores for ``members[i]`` (item -1: -inf), float32 like `recommend`'s."""
        members = np.asarray(members, dtype=np.int64)
        out = np.full(items.shape, -np.inf, dtype=np.float32)
        step = self.batch_size
        for start in range(0, len(members), step):
            scores = np.asarray(self.score(members[start:start + step]), dtype=np.float32)
            step = batch_rows(scores.shape[1], self.batch_size)
            rows = items[start:start + len(scores)]
            out[start:start + len(scores)] = np.take_along_axis(scores, np.maximum(rows, 0), axis=1)
        out[items < 0] = -np.inf
        return out

    def score_stats(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each member's mean and standard deviation over all finite item scores (float32)."""
        members = np.asarray(members, dtype=np.int64)
        mean = np.zeros(len(members), dtype=np.float32)
        std = np.zeros(len(members), dtype=np.float32)
        step = self.batch_size
        for start in range(0, len(members), step):
            scores = np.asarray(self.score(members[start:start + step]), dtype=np.float32)
            step = batch_rows(scores.shape[1], self.batch_size)
            m, s = row_stats(scores)
            mean[start:start + len(scores)], std[start:start + len(scores)] = m, s
        return mean, std

    def similar(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(f"{self.name} has no item similarity")


def mask_rows(scores: np.ndarray, exclude: sp.csr_matrix, members: np.ndarray) -> None:
    """Set ``scores[i, j] = -inf`` for each item j in ``exclude``'s row of ``members[i]``."""
    rows = exclude[members]
    scores[np.repeat(np.arange(len(members)), np.diff(rows.indptr)), rows.indices] = -np.inf


def row_stats(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and std of the finite values (float32, as `standardise` computes them)."""
    finite = np.isfinite(scores)
    if finite.all():
        return scores.mean(axis=1, dtype=np.float32), scores.std(axis=1, dtype=np.float32)
    masked = np.where(finite, scores, np.nan)
    return np.nanmean(masked, axis=1), np.nanstd(masked, axis=1)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-n of a dense score matrix, best first (ties: lower column first).

    A full argpartition writes an index for every score; instead, the n-th best score of every
    ``stride``-th column is a threshold at or below the row's n-th best, so only the few scores
    at or above it (about n x stride a row) are partitioned. Rows where that selects too many
    (heavy ties, -inf rows) take the plain path."""
    b, width = scores.shape
    n = min(n, width)
    if n == 0 or b == 0:
        return np.zeros((b, n), dtype=np.int64), np.zeros((b, n), dtype=scores.dtype)
    stride = min(16, 320 // n)
    if stride < 2 or width < 4 * n * stride:
        return top_plain(scores, np.arange(width), n)
    threshold = np.partition(scores[:, ::stride], -n, axis=1)[:, -n]
    mask = scores >= threshold[:, None]
    counts = np.count_nonzero(mask, axis=1)
    wide = counts > 8 * n * stride
    mask[wide] = False
    rows, cols = np.nonzero(mask)
    counts[wide] = 0
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    pos = np.arange(len(rows)) - starts[rows]
    room = max(int(counts.max()), n)
    packed = np.full((b, room), -np.inf, dtype=scores.dtype)
    packed_cols = np.zeros((b, room), dtype=np.int64)
    packed[rows, pos] = scores[rows, cols]
    packed_cols[rows, pos] = cols
    items, top = top_plain(packed, packed_cols, n)
    if wide.any():
        items[wide], top[wide] = top_plain(scores[wide], np.arange(width), n)
    return items, top


def top_plain(scores: np.ndarray, cols: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n by argpartition, then sorted by (score desc, column); ``cols`` maps positions to items
    (one row for all, or one per row)."""
    part = np.argpartition(scores, scores.shape[1] - n, axis=1)[:, -n:]
    part_scores = np.take_along_axis(scores, part, axis=1)
    part_cols = cols[part] if cols.ndim == 1 else np.take_along_axis(cols, part, axis=1)
    order = np.lexsort((part_cols, -part_scores), axis=-1)
    return np.take_along_axis(part_cols, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def exclusion_keys(exclude: sp.csr_matrix | None, members: np.ndarray, n_items: int) -> np.ndarray | None:
    """Sorted row * n_items + item keys of ``exclude``'s rows for ``members`` (rows = positions)."""
    if exclude is None:
        return None
    rows = exclude[members]
    r = np.repeat(np.arange(len(members), dtype=np.int64), np.diff(rows.indptr))
    keys = r * n_items + rows.indices
    return keys if np.all(keys[1:] > keys[:-1]) else np.unique(keys)  # sorted rows: already unique


def in_sorted(values: np.ndarray, sorted_keys: np.ndarray | None) -> np.ndarray:
    """``np.isin`` against keys already sorted: one binary search each, no sort of ``values``."""
    if sorted_keys is None or len(sorted_keys) == 0:
        return np.zeros(values.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return np.asarray(sorted_keys[at] == values)


def standardise(scores: np.ndarray) -> np.ndarray:
    """Per-row z-score so models on different scales can be blended."""
    mean, std = row_stats(scores)
    return _z(scores, mean[:, None], std[:, None])


def _z(scores: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (scores - mean) / np.where(std > 0, std, np.float32(1.0))


class Blend(Model):
    """Weighted blend of standardised scores of already-fitted models (e.g. ALS + popularity).

    `recommend` blends the union of each part's top ``candidates`` (each part's scores standardised
    with the member's full-row mean and std), not every item. An item outside the union scores at
    most the blend of each part's last candidate score; a member whose n-th blended score does not
    beat that bound is blended again from 4x as many candidates, and past ``DEEPEST`` ranked over
    every item, so the result is the full ranking's."""

    def __init__(self, name: str, parts: list[tuple[Model, float]], candidates: int = 50):
        self.name = name
        self.parts = parts
        self.candidates = candidates
        self.full_rows = 0  # members the last `recommend` ranked over every item (bound not met)

    def fit(self, ds: Dataset, matrix: sp.csr_matrix) -> Self:
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        total: np.ndarray | None = None
        for model, weight in self.parts:
            part = weight * standardise(np.asarray(model.score(members), dtype=np.float32))
            total = part if total is None else total + part
        if total is None:
            raise ValueError(f"blend {self.name!r} has no parts")
        return total

    def recommend(self, members: np.ndarray, n: int,
                  exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        members = np.asarray(members, dtype=np.int64)
        if not self.parts or any(w < 0 for _, w in self.parts) or len(members) == 0:
            return super().recommend(members, n, exclude)
        depth = max(n, self.candidates)
        lists, stats = [], []
        for model, _ in self.parts:
            lists.append(model.recommend(members, depth, exclude))
            stats.append(model.score_stats(members))
        # every candidate of every part, sorted by item: a shared item sits next to itself
        merged = np.concatenate([items for items, _ in lists], axis=1)
        origin = np.repeat(np.arange(len(lists)), [items.shape[1] for items, _ in lists])
        order = np.argsort(merged, axis=1, kind="stable")
        sorted_items = np.take_along_axis(merged, order, axis=1)
        union = sorted_items.copy()
        origin_of = origin[order]
        given = np.take_along_axis(np.concatenate([scores for _, scores in lists], axis=1), order, axis=1)
        union[:, 1:][union[:, 1:] == union[:, :-1]] = -1  # each item once (its first place)
        blended = np.zeros(union.shape, dtype=np.float32)
        bound = np.zeros(len(members), dtype=np.float32)
        parts = zip(self.parts, lists, stats, strict=True)
        for k, ((model, weight), (_, scores), (mean, std)) in enumerate(parts):
            if weight <= 0:  # a part weighted 0 adds nothing (and would turn -inf into nan)
                continue
            # the part's own candidates carry their scores; only the others are scored
            part = np.zeros(union.shape, dtype=np.float32)
            known = np.zeros(union.shape, dtype=bool)
            for shift in range(len(lists)):  # the item's copies follow its first place
                same = (origin_of[:, shift:] == k) & (union[:, :union.shape[1] - shift] >= 0)
                if shift:
                    same &= sorted_items[:, shift:] == sorted_items[:, :union.shape[1] - shift]
                part[:, :union.shape[1] - shift][same] = given[:, shift:][same]
                known[:, :union.shape[1] - shift] |= same
            ask = np.where(known, -1, union)
            if (ask >= 0).any():
                part = np.where(known, part, model.score_items(members, ask))
            blended += weight * _z(part, mean[:, None], std[:, None])
            bound += weight * _z(scores[:, -1], mean, std)
        blended[union < 0] = -np.inf
        items, top = top_plain(blended, union, min(n, union.shape[1]))
        out_items = np.full((len(members), n), -1, dtype=np.int64)
        out_scores = np.full((len(members), n), -np.inf, dtype=np.float32)
        out_items[:, :items.shape[1]], out_scores[:, :items.shape[1]] = items, top
        # float noise between a part's ranking and its item scores: a small margin, then re-rank
        with np.errstate(invalid="ignore"):  # a part that ran out of items: bound -inf, nothing outside
            unsure = out_scores[:, -1] <= bound + 1e-4 * (1 + np.abs(bound))
        self.full_rows = int(unsure.sum())
        if self.full_rows and self.candidates < DEEPEST:
            # parts that disagree: their deeper candidates bound most of these members; the rest rank fully
            own = [(m.model if isinstance(m, Ranked) else m, w) for m, w in self.parts]  # keep Ranked's cache
            deeper = Blend(self.name, own, depth * 4)
            out_items[unsure], out_scores[unsure] = deeper.recommend(members[unsure], n, exclude)
            self.full_rows = deeper.full_rows
        elif self.full_rows:
            out_items[unsure], out_scores[unsure] = super().recommend(members[unsure], n, exclude)
        out_items[~np.isfinite(out_scores)] = -1
        return out_items, out_scores


class Ranked(Model):
    """A fitted model whose last ranking is kept: evaluation asks a blend's parts for their top
    candidates and the same models for their own top n, which is a prefix of the first answer."""

    def __init__(self, model: Model, depth: int = 0):
        self.model, self.name, self.depth = model, model.name, depth
        self._last: tuple[np.ndarray, sp.csr_matrix | None, np.ndarray, np.ndarray] | None = None

    def fit(self, ds: Dataset, matrix: sp.csr_matrix) -> Self:
        self.model.fit(ds, matrix)
        self._last = None
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        return self.model.score(members)

    def score_items(self, members: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.model.score_items(members, items)

    def score_stats(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.score_stats(members)

    def similar(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.model.similar(items, n)

    def recommend(self, members: np.ndarray, n: int,
                  exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        members = np.asarray(members, dtype=np.int64)
        last = self._last
        if (last is not None and last[1] is exclude and last[2].shape[1] >= n
                and np.array_equal(last[0], members)):
            return last[2][:, :n].copy(), last[3][:, :n].copy()
        items, scores = self.model.recommend(members, max(n, self.depth), exclude)
        self._last = (members.copy(), exclude, items, scores)
        return items[:, :n].copy(), scores[:, :n].copy()
