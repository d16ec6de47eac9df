"""FAISS index of item vectors, and its recall measured against exact search.

Exact (flat inner product) for small catalogues; past `exact_below` items, IVF with the number of
probed lists raised until recall@100 on real member vectors reaches the target. Recall on random
vectors would say nothing, so the check always uses the trained factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.config import IndexConfig

RECALL_TARGET = 0.95
RECALL_K = 100


@dataclass
class IndexReport:
    kind: str
    nlist: int
    nprobe: int
    recall_at_100: float
    queries: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def exact_top(queries: np.ndarray, vectors: np.ndarray, k: int, batch: int = 1024) -> np.ndarray:
    """Exact inner-product top-k ids (BLAS matmul + argpartition)."""
    k = min(k, len(vectors))
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), batch):
        scores = queries[s:s + batch] @ vectors.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        out[s:s + batch] = part
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of exact top-k ids the index also returned (order ignored)."""
    hits = sum(len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size if truth.size else 1.0


def build_index(item_factors: np.ndarray, member_factors: np.ndarray, cfg: IndexConfig,
                seed: int = 0):
    """Build the serving index; return (faiss index, IndexReport)."""
    import faiss

    vectors = np.ascontiguousarray(item_factors, dtype=np.float32)
    n, d = vectors.shape
    rng = np.random.default_rng(seed)
    sample = member_factors[rng.choice(len(member_factors), min(cfg.recall_sample, len(member_factors)),
                                       replace=False)] if len(member_factors) else vectors[:cfg.recall_sample]
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    k = min(RECALL_K, n)
    truth = exact_top(sample, vectors, k)
    kind = cfg.kind if cfg.kind != "auto" else ("flat" if n < cfg.exact_below else "ivf")

    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(vectors)
        _, found = index.search(sample, k)
        return index, IndexReport("flat", 0, 0, recall(found, truth), len(sample))

    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(vectors)
        ef = 64
        while True:
            index.hnsw.efSearch = ef
            _, found = index.search(sample, k)
            r = recall(found, truth)
            if r >= RECALL_TARGET or ef >= 1024:
                return index, IndexReport("hnsw", 0, ef, r, len(sample))
            ef *= 2

    nlist = max(1, int(4 * np.sqrt(n)))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    train_n = min(n, nlist * 64)
    index.train(vectors[rng.choice(n, train_n, replace=False)] if train_n < n else vectors)
    index.add(vectors)
    nprobe = cfg.nprobe or 1
    while True:
        index.nprobe = nprobe
        _, found = index.search(sample, k)
        r = recall(found, truth)
        if cfg.nprobe or r >= RECALL_TARGET or nprobe >= nlist:
            return index, IndexReport("ivf", nlist, nprobe, r, len(sample))
        nprobe = min(nlist, nprobe * 2)
