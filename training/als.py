"""ALS matrix factorisation with `implicit` (CPU), behind the shared model API."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns and slows down otherwise
# OpenMP threads sleep at barriers instead of spinning: on a busy machine with few cores, spinning
# threads take the cores the other threads wait for, and small fits slow down by orders of magnitude.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from service.model_bundle import ItemTable  # noqa: E402
from training.config import AlsConfig, TrainConfig, Weighting  # noqa: E402
from training.dataset import Dataset, confidence_matrix  # noqa: E402
from training.model_api import Model, batch_rows, exclusion_keys, in_sorted, top_n  # noqa: E402

#: Members `ALS.recommend` ranks with the length-pruned search first, to see how far it reads, and
#: the share of the catalogue its mean read may reach for the rest to go that way too.
PRUNED_SAMPLE = 512
PRUNED_READ = 0.25

if TYPE_CHECKING:
    from implicit.cpu.als import AlternatingLeastSquares

    from training.progress import Steps


def make_implicit_model(cfg: AlsConfig, threads: int = 0) -> AlternatingLeastSquares:
    """The bare implicit model for a config (also what benchmarks time against)."""
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares(factors=cfg.factors, regularization=cfg.regularization, alpha=cfg.alpha,
                                   iterations=cfg.iterations, random_state=cfg.seed,
                                   num_threads=threads, calculate_training_loss=False)


def attribute_rows(items: ItemTable, weight: float) -> sp.csr_matrix:
    """Pseudo-members, one per catalogue attribute value (category, brand, each tag), whose row holds
    the items that have it with confidence ``weight``: items sharing attributes get close vectors."""
    rows: list[int] = []
    cols: list[int] = []
    index: dict[str, int] = {}  # "field:value" -> its row
    for field, values in (("c", items.category), ("b", items.brand), ("t", items.tags)):
        for i, value in enumerate(values.tolist()):
            for word in (str(value).split() if field == "t" else [str(value)] if value else []):
                rows.append(index.setdefault(f"{field}:{word}", len(index)))
                cols.append(i)
    m = sp.csr_matrix((np.full(len(rows), weight, dtype=np.float32), (rows, cols)),
                      shape=(len(index), len(items.item_id)))
    m.sum_duplicates()
    m.data[:] = weight  # an item listing the same tag twice still has it once
    return m


class ALS(Model):
    """implicit's ALS, plus two options from AlsConfig / Weighting:

    - ``attribute_weight``: attribute pseudo-members join the fit (`attribute_rows`);
    - ``member_half_life``: after the fit, member vectors are solved again on the fixed item factors
      from the same events decayed with this (sharper) half-life: item vectors learn from long
      histories, a member's vector leans on their latest items (implicit's exact least squares, the
      formula the service's fold-in uses).
    """

    name = "als"
    # set by fit
    member_factors: np.ndarray
    item_factors: np.ndarray
    attribute_factors: np.ndarray | None  # the pseudo-members' vectors, if any
    fitted: tuple[np.ndarray, np.ndarray]  # (all user rows, items) as fitted

    def __init__(self, cfg: AlsConfig, weighting: Weighting | None = None,
                 on_iteration: Callable[[int], None] | None = None):
        self.cfg = cfg
        self.weighting = weighting
        self.on_iteration = on_iteration

    def fit(self, ds: Dataset, matrix: sp.csr_matrix, iterations: int | None = None,
            start: ALS | None = None) -> Self:
        """Fit ``matrix`` (members x items); ``start`` = a fitted ALS of the same shapes to continue."""
        on_iteration = self.on_iteration
        callback = (lambda it, _elapsed, _loss: on_iteration(it)) if on_iteration else None
        cfg = self.cfg if iterations is None else self.cfg.model_copy(update={"iterations": iterations})
        n_members = matrix.shape[0]
        full = matrix.tocsr().astype(np.float32)
        if cfg.attribute_weight > 0:
            full = sp.vstack([full, attribute_rows(ds.items, cfg.attribute_weight)], format="csr")
        with threadpool_limits(1, "blas"):
            model = make_implicit_model(cfg)
            if start is not None:  # implicit continues from factors it already has
                users, items = start.fitted
                if users.shape != (full.shape[0], cfg.factors) or items.shape != (full.shape[1], cfg.factors):
                    raise ValueError(f"warm start factors {users.shape}, {items.shape} "
                                     f"do not fit a {full.shape} matrix with {cfg.factors} factors")
                model.user_factors = np.array(users, dtype=np.float32)
                model.item_factors = np.array(items, dtype=np.float32)
            model.fit(full, show_progress=False, callback=callback)
            users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
            self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
            self.fitted = (users, self.item_factors)
            self.member_factors = users[:n_members]
            self.attribute_factors = users[n_members:] if len(users) > n_members else None
            w = self.weighting
            if w is not None and w.member_half_life:
                sharp = confidence_matrix(ds, w.model_copy(update={"half_life": w.member_half_life}))
                self.member_factors = np.ascontiguousarray(
                    model.recalculate_user(np.arange(n_members), sharp.astype(np.float32)), dtype=np.float32)
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        return self.member_factors[members] @ self.item_factors.T

    def recommend(self, members: np.ndarray, n: int,
                  exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-n by inner product, by whichever of two exact searches suits the factors: the
        length-pruned one (`_recommend_pruned`) when a sample of the members settles within a
        ``PRUNED_READ`` share of the catalogue (item lengths spread widely), else faiss's brute force."""
        members = np.asarray(members, dtype=np.int64)
        sample = members[:PRUNED_SAMPLE]
        items, scores, reads = self._recommend_pruned(sample, n, exclude)
        if len(members) <= PRUNED_SAMPLE:
            return items, scores
        rest = members[PRUNED_SAMPLE:]
        if reads.mean() <= PRUNED_READ * len(self.item_factors):
            more_items, more_scores, _ = self._recommend_pruned(rest, n, exclude)
        else:
            more_items, more_scores = self._recommend_faiss(rest, n, exclude)
        return np.concatenate([items, more_items]), np.concatenate([scores, more_scores])

    def _recommend_faiss(self, members: np.ndarray, n: int,
                         exclude: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-n by inner product with faiss's brute-force search (BLAS blocks and a heap:
        no dense score matrix is kept). Each member asks for n + their excluded items, and drops
        those; members go in batches of similar exclusion counts so a batch asks for little more."""
        import faiss

        members = np.asarray(members, dtype=np.int64)
        n_items = self.item_factors.shape[0]
        out_items = np.full((len(members), n), -1, dtype=np.int64)
        out_scores = np.full((len(members), n), -np.inf, dtype=np.float32)
        if n == 0 or len(members) == 0 or n_items == 0:
            return out_items, out_scores
        extra = np.zeros(len(members), dtype=np.int64)
        if exclude is not None:
            extra = np.diff(exclude.indptr)[members]
        by_extra = np.argsort(extra, kind="stable")
        for start in range(0, len(members), self.batch_size):
            rows = by_extra[start:start + self.batch_size]
            batch = members[rows]
            k = int(min(n_items, n + extra[rows].max()))
            scores, items = faiss.knn(self.member_factors[batch], self.item_factors, k,
                                      metric=faiss.METRIC_INNER_PRODUCT)
            keys = np.arange(len(batch), dtype=np.int64)[:, None] * n_items + items
            blocked = items < 0
            blocked |= in_sorted(keys, exclusion_keys(exclude, batch, n_items))
            keep = ~blocked
            rank = np.cumsum(keep, axis=1) - 1
            r, c = np.nonzero(keep & (rank < n))
            out_items[rows[r], rank[r, c]] = items[r, c]
            out_scores[rows[r], rank[r, c]] = scores[r, c]
        return out_items, out_scores

    def _recommend_pruned(self, members: np.ndarray, n: int, exclude: sp.csr_matrix | None,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact top-n by inner product, batched and length-pruned (service.model.NormPrunedSearch's
        bound for many members at once): items sorted longest first, a batch scores a prefix of them
        with one BLAS product; a member whose n-th best (excluded items left out) reaches |u| times the
        next item's length is settled, as no later item can beat it; the others read twice as far.
        Also returns how many items each member's answer read."""
        members = np.asarray(members, dtype=np.int64)
        n_items = self.item_factors.shape[0]
        out_items = np.full((len(members), n), -1, dtype=np.int64)
        out_scores = np.full((len(members), n), -np.inf, dtype=np.float32)
        reads = np.zeros(len(members), dtype=np.int64)
        if n == 0 or len(members) == 0 or n_items == 0:
            return out_items, out_scores, reads
        order, vectors, lengths, position = self._by_length()
        norms = np.sqrt(np.einsum("ij,ij->i", self.member_factors, self.member_factors))
        rows, read = np.arange(len(members)), int(min(n_items, max(1024, 4 * n)))
        while len(rows):
            left = []
            step = batch_rows(read, self.batch_size)  # a batch's scores stay within BATCH_BYTES
            for chunk in range(0, len(rows), step):
                part = rows[chunk:chunk + step]
                batch = members[part]
                scores = self.member_factors[batch] @ vectors[:read].T
                if exclude is not None:  # excluded items, as positions in the length order
                    ex = exclude[batch]
                    r = np.repeat(np.arange(len(batch)), np.diff(ex.indptr))
                    pos = position[ex.indices]
                    scores[r[pos < read], pos[pos < read]] = -np.inf
                at, top = top_n(scores, n)
                settled = np.ones(len(part), dtype=bool)  # all read: settled
                if read < n_items:  # no unread item can beat the n-th best
                    settled = top[:, -1] >= norms[batch] * lengths[read]
                done, width = part[settled], top.shape[1]  # width < n: a catalogue smaller than n
                out_items[done, :width] = np.where(np.isfinite(top[settled]), order[at[settled]], -1)
                out_scores[done, :width] = top[settled]
                reads[done] = read
                left.append(part[~settled])
            rows, read = np.concatenate(left), int(min(n_items, 2 * read))
        return out_items, out_scores, reads

    def _by_length(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Items longest first: (order, vectors in that order, their lengths, each item's position)."""
        cached = getattr(self, "_length_order", None)
        if cached is not None and cached[0] is self.item_factors:
            return cached[1]
        lengths = np.linalg.norm(self.item_factors, axis=1)
        order = np.argsort(-lengths, kind="stable").astype(np.int64)
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        sorted_lengths = np.r_[lengths[order], 0.0].astype(np.float32)  # [n_items]: nothing left
        result = (order, np.ascontiguousarray(self.item_factors[order]), sorted_lengths, position)
        self._length_order = (self.item_factors, result)
        return result

    def score_items(self, members: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Dot products with the given items only: a batch of members against the distinct items
        it asks for (a blend asks for a few hundred, mostly the same popular ones)."""
        out = np.full(items.shape, -np.inf, dtype=np.float32)
        members = np.asarray(members)
        for start in range(0, len(members), self.batch_size):
            rows = items[start:start + self.batch_size]
            valid = rows >= 0
            wanted = np.unique(rows[valid])
            if len(wanted) > 8 * rows.shape[1]:  # scattered asks (an item model's): each pair's product
                users = self.member_factors[members[start:start + self.batch_size]]
                for a in range(0, len(rows), 256):  # 256 x width x factors gathered at a time
                    gathered = self.item_factors[np.maximum(rows[a:a + 256], 0)]
                    dots = np.einsum("mf,mkf->mk", users[a:a + 256], gathered)
                    out[start + a:start + a + len(dots)] = np.where(valid[a:a + 256], dots, -np.inf)
                continue
            column = np.zeros(len(self.item_factors), dtype=np.int64)
            column[wanted] = np.arange(len(wanted))
            scores = self.member_factors[members[start:start + self.batch_size]] @ self.item_factors[wanted].T
            if len(wanted):
                out[start:start + len(rows)] = np.where(
                    valid, np.take_along_axis(scores, column[np.maximum(rows, 0)], axis=1), -np.inf)
        out[items < 0] = -np.inf
        return out

    def score_stats(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of a member's scores over all items from the factors alone:
        mean = u . mean(v), mean of squares = u' (V'V / n) u."""
        v = self.item_factors.astype(np.float64)
        u = self.member_factors[np.asarray(members)].astype(np.float64)
        mean = u @ v.mean(axis=0)
        square = ((u @ (v.T @ v / max(len(v), 1))) * u).sum(axis=1)
        std = np.sqrt(np.maximum(square - mean * mean, 0.0))
        return mean.astype(np.float32), std.astype(np.float32)

    def similar(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        from training.neighbours import cosine_neighbours

        nbr, sim = cosine_neighbours(self.item_factors, n, queries=np.asarray(items))
        return nbr, sim


def fit_final(ds: Dataset, matrix: sp.csr_matrix, config: TrainConfig, steps: Steps,
              start: ALS | None = None, bar: bool = True) -> tuple[ALS, dict[str, Any]]:
    """The published ALS: continued from ``start`` (the re-ranker's first stage, fitted before its
    cutoff) for ``warm_iterations`` sweeps, or fitted from scratch. Returns it and what ran.
    ``bar=False``: no progress bar (it runs beside a step that shows one)."""
    cfg = config.als
    warm = start is not None and cfg.warm_iterations > 0
    sweeps = cfg.warm_iterations if warm else cfg.iterations
    name = "ALS (continued from the re-ranker's first stage)" if warm else "ALS"
    with steps.step(name, total=sweeps, bar=bar) as advance:
        als = ALS(cfg, config.weighting, on_iteration=lambda _it: advance(1)).fit(
            ds, matrix, iterations=sweeps, start=start if warm else None)
    return als, {"warm_start": warm, "iterations": sweeps}
