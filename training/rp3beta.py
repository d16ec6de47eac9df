"""RP3beta: the item-to-item model beside ALS, and its top-k neighbour table.

A 3-step random walk member -> item -> member -> item (Paudel et al. 2016, as formulated by Dacrema
et al. 2019): from item i to a member who has it, then to one of that member's items j, each step
with probability proportional to the confidence, raised to ``alpha``; the arrival probability is
divided by j's popularity ** ``beta`` so hits are not only best-sellers. Only the ``k`` strongest j
per i are kept, so the model is a sparse items x items matrix W; a member scores their confidence
row times W ("because you liked X": row X of W).

Cost. The walk visits, per member, every pair of their items: ``walk_paths`` = sum over members of
(items they have)^2 multiply-adds, which is the fit's time. W is built a block of item rows at a
time with at most ``block_paths`` walks per block (memory about 30 bytes per walk of a block), plus
n_items x k kept entries (8 bytes each). Past ``max_paths`` the fit is skipped with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import scipy.sparse as sp

from training.config import ItemModelConfig
from training.dataset import Dataset
from training.model_api import Model, exclusion_keys, in_sorted, top_n

CACHE_NNZ = 20_000_000  # the last products kept (8 bytes an entry)
CHUNK_ROWS = 256  # members ranked together from their reached items (padded to the longest)
BLOCK_PATHS = 10_000_000  # walks per block of item rows: ~300 MB for the block's product and its sort


def top_k_rows(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The k largest entries of each row of ``m`` (ties: lower column first), as CSR in column order.

    Each row longer than k finds its k-th largest value with one partition of its own slice (linear,
    where sorting every entry of a block of walks was most of the fit); the entries above it are
    kept, and of those equal to it as many as the row still needs, lowest column first. Only the
    kept entries are put in column order (a block's product comes unsorted)."""
    m = sp.csr_matrix(m)
    data, indices, indptr = m.data, m.indices, m.indptr
    lengths = np.diff(indptr)
    n_rows = m.shape[0]
    kth = np.full(n_rows, -np.inf)  # a row of at most k entries keeps them all
    if k > 0:
        for r in np.flatnonzero(lengths > k).tolist():
            row = data[indptr[r]:indptr[r + 1]]
            kth[r] = np.partition(row, len(row) - k)[len(row) - k]
    else:
        kth[:] = np.inf
    row_of = np.repeat(np.arange(n_rows), lengths)
    t = kth[row_of]
    above = data > t
    keep = above
    tied = np.flatnonzero(data == t)  # few: the entries equal to their row's k-th largest
    if len(tied):
        need = k - np.bincount(row_of, weights=above, minlength=n_rows).astype(np.int64)
        tied = tied[np.lexsort((indices[tied], row_of[tied]))]  # by row, then column
        rows = row_of[tied]
        first = np.r_[True, rows[1:] != rows[:-1]]
        start = np.flatnonzero(first)[np.cumsum(first) - 1]
        keep = above.copy()
        keep[tied[np.arange(len(tied)) - start < need[rows]]] = True
    kept = np.flatnonzero(keep)
    out = sp.csr_matrix((data[kept], indices[kept], np.r_[0, np.cumsum(np.minimum(lengths, k))]),
                        shape=m.shape)
    out.sort_indices()
    return out


def neighbour_table(w: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per item its k strongest positive neighbours in ``w``, best first: (ids [n, k] int32, scores
    [n, k] float32); missing ones are -1 with score 0."""
    w = sp.csr_matrix(w)
    top = top_k_rows(sp.csr_matrix((np.maximum(w.data, 0), w.indices, w.indptr), shape=w.shape), k)
    top.eliminate_zeros()
    n = top.shape[0]
    ids = np.full((n, k), -1, dtype=np.int32)
    scores = np.zeros((n, k), dtype=np.float32)
    rows = np.repeat(np.arange(n), np.diff(top.indptr))
    order = np.lexsort((-top.data, rows))  # best first within each row
    rank = np.arange(len(order)) - top.indptr[rows[order]]
    ids[rows[order], rank] = top.indices[order]
    scores[rows[order], rank] = top.data[order]
    return ids, scores


def item_walks(matrix: sp.csr_matrix) -> np.ndarray:
    """Per item, the walks item -> member -> item starting from it: the sum of its members' history
    lengths (int64). Their total is the fit's multiply-adds."""
    lengths = np.diff(sp.csr_matrix(matrix).indptr).astype(np.int64)
    csc = sp.csc_matrix(matrix)
    item = np.repeat(np.arange(csc.shape[1]), np.diff(csc.indptr))
    return np.bincount(item, weights=lengths[csc.indices], minlength=csc.shape[1]).astype(np.int64)


def walk_blocks(walks: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive item ranges of at most ``budget`` walks each (an item over budget alone)."""
    bounds = [0]
    total = 0
    ends = np.cumsum(walks)
    while bounds[-1] < len(walks):
        start = bounds[-1]
        stop = int(np.searchsorted(ends, total + budget, side="right"))
        stop = max(stop, start + 1)
        total = int(ends[stop - 1])
        bounds.append(stop)
    return list(zip(bounds[:-1], bounds[1:], strict=True))


class RP3beta(Model):
    """The walk model behind the shared model API; ``weights`` is W (items x items, top k per row)."""

    name = "rp3beta"
    batch_size = 1024  # dense [batch, n_items] scores: 1,024 x 100k items is 400 MB of float32
    matrix: sp.csr_matrix  # members x items confidence, as fitted
    weights: sp.csr_matrix
    _products: tuple[np.ndarray, list[tuple[int, sp.csr_matrix]]] | None = None  # see `products`

    def __init__(self, k: int = 100, alpha: float = 0.3, beta: float = 0.2, block_paths: int = BLOCK_PATHS):
        self.k, self.alpha, self.beta, self.block_paths = k, alpha, beta, block_paths

    def fit(self, ds: Dataset | None, matrix: sp.csr_matrix) -> Self:
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)
        p_ui = _row_normalised(self.matrix, self.alpha)  # member -> item
        p_iu = _row_normalised(sp.csr_matrix(self.matrix.T), self.alpha)  # item -> member
        degree = np.diff(p_iu.indptr).astype(np.float32)  # members per item
        scale = (np.where(degree > 0, degree, 1.0) ** -self.beta).astype(np.float32)
        blocks = []
        for start, stop in walk_blocks(item_walks(self.matrix), self.block_paths):
            block = sp.csr_matrix(p_iu[start:stop] @ p_ui)
            block.data *= scale[block.indices]
            rows = np.repeat(np.arange(start, stop), np.diff(block.indptr))
            block.data[block.indices == rows] = 0  # an item is not its own neighbour
            block.eliminate_zeros()
            blocks.append(top_k_rows(block, self.k))
        n = self.matrix.shape[1]
        joined = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((n, n))
        self.weights = joined.astype(np.float32)
        self._products = None
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        return np.asarray(self.sparse_scores(members).toarray(), dtype=np.float32)

    def sparse_scores(self, members: np.ndarray, sort: bool = True) -> sp.csr_matrix:
        """Members' rows times W, sparse: only the items their walks reach (every other item
        scores 0); ``sort``: each row's items in column order."""
        out = sp.csr_matrix(self.matrix[np.asarray(members, dtype=np.int64)] @ self.weights, dtype=np.float32)
        if sort:
            out.sort_indices()
        return out

    def products(self, members: np.ndarray) -> list[tuple[int, sp.csr_matrix]]:
        """`sparse_scores` of ``members`` in batches (first row, product), sorted; the last answer
        is kept when it is small (``CACHE_NNZ``): ranking, the mean/std and the given items' scores
        of one set of members (what a blend asks in turn) share one product."""
        members = np.asarray(members, dtype=np.int64)
        cached = self._products
        if cached is not None and np.array_equal(cached[0], members):
            return cached[1]
        out = [(start, self.sparse_scores(members[start:start + self.batch_size]))
               for start in range(0, len(members), self.batch_size)]
        self._products = (members.copy(), out) if sum(s.nnz for _, s in out) <= CACHE_NNZ else None
        return out

    def recommend(self, members: np.ndarray, n: int,
                  exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The generic ranking without dense scores: the reached items (positive scores) are ranked
        from the sparse product; a row with fewer than n of them is filled with score-0 items in
        column order, as a full sort would (ties: lower column first)."""
        members = np.asarray(members, dtype=np.int64)
        n_items = self.weights.shape[1]
        out_items = np.full((len(members), n), -1, dtype=np.int64)
        out_scores = np.full((len(members), n), -np.inf, dtype=np.float32)
        if n == 0 or len(members) == 0:
            return out_items, out_scores
        for start, product in self.products(members):
            batch = members[start:start + product.shape[0]]
            s = product.copy()
            rows = np.repeat(np.arange(len(batch), dtype=np.int64), np.diff(s.indptr))
            excluded = exclusion_keys(exclude, batch, n_items)
            s.data[in_sorted(rows * n_items + s.indices, excluded)] = 0
            s.eliminate_zeros()  # what is left: the reached items that may be recommended
            counts = np.diff(s.indptr)
            # rows of similar counts together, so a chunk's padded width is close to its rows' counts
            by_count = np.argsort(counts, kind="stable")
            s = s[by_count]
            for a in range(0, len(batch), CHUNK_ROWS):
                chunk = s[a:a + CHUNK_ROWS]
                lengths = np.diff(chunk.indptr)
                r = np.repeat(np.arange(chunk.shape[0]), lengths)
                pos = np.arange(chunk.nnz) - chunk.indptr[r]
                packed = np.full((chunk.shape[0], max(int(lengths.max()), n)), -np.inf, dtype=np.float32)
                packed_cols = np.full(packed.shape, -1, dtype=np.int64)
                packed[r, pos], packed_cols[r, pos] = chunk.data, chunk.indices
                at, top = top_n(packed, n)
                cols = np.take_along_axis(packed_cols, at, axis=1)
                tied = np.lexsort((cols, -top), axis=-1)  # equal scores: lower column first
                where = start + by_count[a:a + chunk.shape[0]]
                out_items[where] = np.take_along_axis(cols, tied, axis=1)
                out_scores[where] = np.take_along_axis(top, tied, axis=1)
            short = by_count[:np.searchsorted(counts[by_count], n)]  # s's first rows, fewest reached
            if len(short):
                self._fill(short, s[:len(short)], counts[short], batch, exclude, n,
                           out_items[start:start + len(batch)], out_scores[start:start + len(batch)])
        out_items[~np.isfinite(out_scores)] = -1
        return out_items, out_scores

    def _fill(self, short: np.ndarray, reached: sp.csr_matrix, counts: np.ndarray, batch: np.ndarray,
              exclude: sp.csr_matrix | None, n: int, out_items: np.ndarray, out_scores: np.ndarray) -> None:
        """Rows ``short`` of a batch reached fewer than n items (``reached``: their rows): the rest of
        their n are score-0 items, lowest column first, neither reached nor excluded."""
        n_items = self.weights.shape[1]
        r = np.repeat(np.arange(len(short), dtype=np.int64), np.diff(reached.indptr))
        keys = [r * n_items + reached.indices]
        if exclude is not None:
            ex = exclude[batch[short]]
            keys.append(np.repeat(np.arange(len(short), dtype=np.int64), np.diff(ex.indptr)) * n_items
                        + ex.indices)
        blocked = np.unique(np.concatenate(keys))
        per_row = np.bincount(blocked // n_items, minlength=len(short))
        width = int(min(n_items, n + per_row.max()))  # n free columns lie within the first n + blocked
        cols = np.arange(width, dtype=np.int64)[None, :]
        free = ~in_sorted(np.arange(len(short), dtype=np.int64)[:, None] * n_items + cols, blocked)
        rank = np.cumsum(free, axis=1) - 1
        take = free & (rank < (n - counts)[:, None])
        rows, c = np.nonzero(take)
        out_items[short[rows], counts[rows] + rank[rows, c]] = c
        out_scores[short[rows], counts[rows] + rank[rows, c]] = 0.0

    def score_items(self, members: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``items[i]``'s scores for ``members[i]`` looked up in the sparse product (item -1: -inf)."""
        members = np.asarray(members, dtype=np.int64)
        n_items = self.weights.shape[1]
        out = np.zeros(items.shape, dtype=np.float32)
        for start, s in self.products(members):
            keys = np.repeat(np.arange(s.shape[0], dtype=np.int64), np.diff(s.indptr)) * n_items + s.indices
            rows = items[start:start + s.shape[0]]
            want = np.arange(len(rows), dtype=np.int64)[:, None] * n_items + np.maximum(rows, 0)
            at = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
            if len(keys):
                out[start:start + len(rows)] = np.where(keys[at] == want, s.data[at], 0.0)
        out[items < 0] = -np.inf
        return out

    def score_stats(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std over all items from the sparse product (unreached items score 0)."""
        members = np.asarray(members, dtype=np.int64)
        n_items = max(self.weights.shape[1], 1)
        mean = np.zeros(len(members), dtype=np.float64)
        square = np.zeros(len(members), dtype=np.float64)
        for start, s in self.products(members):
            rows = np.repeat(np.arange(s.shape[0]), np.diff(s.indptr))
            data = s.data.astype(np.float64)
            mean[start:start + s.shape[0]] = np.bincount(rows, weights=data, minlength=s.shape[0]) / n_items
            square[start:start + s.shape[0]] = np.bincount(rows, weights=data * data,
                                                           minlength=s.shape[0]) / n_items
        std = np.sqrt(np.maximum(square - mean * mean, 0.0))
        return mean.astype(np.float32), std.astype(np.float32)

    def neighbours(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The "because you liked X" table: per item its k strongest arrivals (see `neighbour_table`)."""
        return neighbour_table(self.weights, k)

    def similar(self, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows = sp.csr_matrix(self.weights[np.asarray(items)])
        return neighbour_table(rows, n)


def _row_normalised(m: sp.csr_matrix, power: float) -> sp.csr_matrix:
    """Rows scaled to sum 1 (transition probabilities), then each entry ** power."""
    totals = np.asarray(m.sum(axis=1)).ravel()
    inv = (1.0 / np.where(totals > 0, totals, 1.0)).astype(np.float32)
    out = sp.csr_matrix(sp.diags(inv) @ m, dtype=np.float32)
    if power != 1.0:
        np.power(out.data, power, out=out.data)
    return out


@dataclass
class ItemModelFit:
    """What `fit_item_model` did: the model, or None with the reason, and figures for the manifest."""

    model: RP3beta | None
    note: str | None  # why it was skipped (None when fitted)
    walks: int  # the fit's multiply-adds (sum of squared history lengths)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"fitted": self.model is not None, "walks": self.walks}
        if self.model is not None:
            out["nnz"] = int(self.model.weights.nnz)
        if self.note:
            out["skipped"] = self.note
        return out


def fit_item_model(ds: Dataset, matrix: sp.csr_matrix, cfg: ItemModelConfig) -> ItemModelFit:
    """RP3beta as the config asks, or None with a one-line note (off, or too many walks)."""
    walks = int(item_walks(matrix).sum())
    if not cfg.enabled:
        return ItemModelFit(None, "item_model.enabled is false", walks)
    if walks > cfg.max_paths:
        return ItemModelFit(None, f"RP3beta skipped: {walks:,} item-member-item walks (the sum of each "
                                  f"member's items squared) > item_model.max_paths {cfg.max_paths:,}",
                            walks)
    model = RP3beta(cfg.k, cfg.alpha, cfg.beta).fit(ds, matrix)
    return ItemModelFit(model, None, walks)
