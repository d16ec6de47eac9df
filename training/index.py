"""FAISS index of item vectors, and its recall measured against exact search.

Exact (flat inner product) for small catalogues. Past `exact_below` items, `auto` measures how much
of the catalogue the service's exact search has to read (service.model.NormPrunedSearch: items
sorted by vector length, scan stopped by the Cauchy-Schwarz bound) for real member vectors: ALS
vectors' lengths span orders of magnitude, so a member's top 100 is usually settled after a few
percent of the items, and exact search stays exact and fast. Only when it would read more than
`EXACT_MAX_SCAN_SHARE` of the items does `auto` build IVF, with the number of probed lists raised
until recall@100 reaches the target. The truth is FAISS's flat search; a flat bundle is served by
the service's length-pruned search, so that search is what its recall measures.

Recall is measured on trained member vectors that are not zero: a member without history has a
zero vector, every item ties at score 0 and "recall" on it is noise (at 1M synthetic members a
fifth of them, which capped every index at ~0.8 and pushed IVF to probe every list). Random
vectors would say nothing either, so the check always uses the trained factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from training.config import IndexConfig

if TYPE_CHECKING:
    import faiss

RECALL_TARGET = 0.95
RECALL_K = 100
#: `auto` keeps exact search past `exact_below` while it reads at most this share of the items
#: for the average member.
EXACT_MAX_SCAN_SHARE = 0.2


@dataclass
class IndexReport:
    kind: str
    nlist: int
    nprobe: int
    recall_at_100: float
    queries: int
    exact_scan_share: float | None = None  # share of items the service's exact search reads (k=100)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def exact_top(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-k ids: FAISS's flat search (BLAS in blocks, a heap per query).

    Measured at 1,000 x 50k: 0.2 s, against 0.8-3.6 s for matmul + argpartition, which page-faults
    a 200 MB score matrix in."""
    import faiss

    k = min(k, len(vectors))
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _, ids = flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return ids.astype(np.int64)


def served_top(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Top-k ids from the service's own exact search (what a bundle with a flat index serves)."""
    from service.model import NormPrunedSearch

    search = NormPrunedSearch(vectors)
    out = np.full((len(queries), min(k, len(vectors))), -1, dtype=np.int64)
    for row, q in enumerate(queries):
        found = search.search(q, k)[0]
        out[row, :len(found)] = found
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of exact top-k ids the index also returned (order ignored)."""
    hits = sum(len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size if truth.size else 1.0


def exact_scan_share(queries: np.ndarray, vectors: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of items a length-pruned exact search must read: those whose length reaches the
    k-th best score over |q| (the search reads in doubling blocks, so somewhat more in practice)."""
    if len(queries) == 0 or len(vectors) == 0:
        return 1.0
    kth = np.einsum("qd,qkd->qk", queries, vectors[truth]).min(axis=1)
    bound = kth / np.maximum(np.linalg.norm(queries, axis=1), 1e-30)
    lengths = np.sort(np.linalg.norm(vectors, axis=1))
    return float(np.mean(1.0 - np.searchsorted(lengths, bound, side="left") / len(vectors)))


def recall_sample(member_factors: np.ndarray, vectors: np.ndarray, size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Up to ``size`` trained member vectors that are not zero (zero: no history, no ranking)."""
    active = (np.flatnonzero(np.any(member_factors != 0, axis=1)) if len(member_factors)
              else np.zeros(0, dtype=np.int64))
    if len(active) == 0:
        return np.ascontiguousarray(vectors[:size], dtype=np.float32)
    pick = rng.choice(active, min(size, len(active)), replace=False)
    return np.ascontiguousarray(member_factors[pick], dtype=np.float32)


def build_index(item_factors: np.ndarray, member_factors: np.ndarray, cfg: IndexConfig,
                seed: int = 0) -> tuple[faiss.Index, IndexReport]:
    """Build the serving index; return (faiss index, IndexReport)."""
    import faiss

    vectors = np.ascontiguousarray(item_factors, dtype=np.float32)
    n, d = vectors.shape
    rng = np.random.default_rng(seed)
    sample = recall_sample(member_factors, vectors, cfg.recall_sample, rng)
    k = min(RECALL_K, n)
    truth = exact_top(sample, vectors, k)
    share = exact_scan_share(sample, vectors, truth)
    kind = cfg.kind
    if kind == "auto":
        kind = "flat" if n < cfg.exact_below or share <= EXACT_MAX_SCAN_SHARE else "ivf"

    if kind == "flat":
        # the service answers a flat bundle with its length-pruned search, not FAISS: check that
        flat = faiss.IndexFlatIP(d)
        flat.add(vectors)
        found = served_top(sample, vectors, k)
        return flat, IndexReport("flat", 0, 0, recall(found, truth), len(sample), round(share, 4))

    if kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        hnsw.add(vectors)
        ef = 64
        while True:
            hnsw.hnsw.efSearch = ef
            _, found = hnsw.search(sample, k)
            r = recall(found, truth)
            if r >= RECALL_TARGET or ef >= 1024:
                return hnsw, IndexReport("hnsw", 0, ef, r, len(sample), round(share, 4))
            ef *= 2

    nlist = max(1, int(4 * np.sqrt(n)))
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    train_n = min(n, nlist * 64)
    ivf.train(vectors[rng.choice(n, train_n, replace=False)] if train_n < n else vectors)
    ivf.add(vectors)
    nprobe = cfg.nprobe or 1
    while True:
        ivf.nprobe = nprobe
        _, found = ivf.search(sample, k)
        r = recall(found, truth)
        if cfg.nprobe or r >= RECALL_TARGET or nprobe >= nlist:
            return ivf, IndexReport("ivf", nlist, nprobe, r, len(sample), round(share, 4))
        nprobe = min(nlist, nprobe * 2)
