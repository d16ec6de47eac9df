"""Item-to-item neighbours from the ALS item vectors (cosine), for "similar" and complements.

Computed once in the trainer and shipped as two arrays, so the service answers SimilarItems with a
lookup. Large catalogues use an IVF index (approximate, a few percent of neighbours can differ from
exact) because exact all-pairs search grows with the square of the catalogue.
"""

from __future__ import annotations

import numpy as np

EXACT_BELOW = 50_000


def cosine_neighbours(vectors: np.ndarray, k: int, queries: np.ndarray | None = None,
                      exact_below: int = EXACT_BELOW) -> tuple[np.ndarray, np.ndarray]:
    """k most similar items per query item (itself excluded): (ids [q, k] int32, cosine [q, k]).

    Missing neighbours (catalogue smaller than k+1) are -1 with similarity 0.
    """
    import faiss

    normed = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    norms = np.linalg.norm(normed, axis=1, keepdims=True)
    normed /= np.where(norms > 0, norms, 1.0)
    n, d = normed.shape
    q_ids = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    if n < exact_below:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # coarse clusters only route the search; 10 k-means rounds suffice
        rng = np.random.default_rng(0)
        index.train(normed[rng.choice(n, min(n, nlist * 39), replace=False)])
        index.nprobe = max(8, nlist // 32)  # measured: recall@50 ~0.99 vs exact on ALS vectors
    index.add(normed)
    want = min(k + 1, n)
    sims, ids = index.search(normed[q_ids], want)
    # drop the query itself wherever it appears; keep the first k others
    not_self = ids != q_ids[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")  # others first, order kept
    ids = np.take_along_axis(ids, order, axis=1)[:, :k]
    sims = np.take_along_axis(sims, order, axis=1)[:, :k]
    valid = np.take_along_axis(not_self, order, axis=1)[:, :k] & (ids >= 0)
    out_ids = np.full((len(q_ids), k), -1, dtype=np.int32)
    out_sims = np.zeros((len(q_ids), k), dtype=np.float32)
    out_ids[:, :ids.shape[1]] = np.where(valid, ids, -1)
    out_sims[:, :sims.shape[1]] = np.where(valid, sims, 0)
    return out_ids, out_sims
