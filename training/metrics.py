"""Ranking metrics at K, computed from top-N lists and the held-out truth.

Definitions (binary relevance, per member, then averaged over members with held-out items):
- recall@K = hits in top K / number of held-out items
- hr@K     = 1 if any held-out item is in the top K
- ndcg@K   = sum_{hit at rank r (0-based)} 1/log2(r+2)  /  sum_{r < min(K, |truth|)} 1/log2(r+2)
- map@K    = sum_{hit at rank r} precision@(r+1)  /  min(K, |truth|)
- coverage@K = distinct items in anyone's top K / catalogue size
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

METRICS = ("recall", "ndcg", "hr", "map", "coverage")


def ranking_metrics(recommended: np.ndarray, truth: sp.csr_matrix, members: np.ndarray,
                    ks: tuple[int, ...], n_items: int) -> dict[str, float]:
    """``recommended[i]`` is the ranked item list of ``members[i]``; truth rows are members."""
    rows = truth[members]
    n_truth = np.diff(rows.indptr)
    # lists shorter than K (tiny catalogues) are padded with -1, which never hits
    width = max(ks)
    top = np.full((len(members), width), -1, dtype=np.int64)
    given = np.asarray(recommended)[:, :width]
    top[:, :given.shape[1]] = given
    # hit matrix: is top[i, r] among member i's held-out items?
    # one lookup of (row, item) keys for all members at once
    span = max(n_items, int(top.max(initial=0)) + 1, int(rows.indices.max(initial=0)) + 1)
    held = np.repeat(np.arange(len(members), dtype=np.int64), n_truth) * span + rows.indices
    hit = (top >= 0) & np.isin(np.arange(len(members), dtype=np.int64)[:, None] * span + top, held)
    # only members with held-out items are averaged (a member with none cannot hit)
    has = n_truth > 0
    discounts = 1.0 / np.log2(np.arange(width) + 2)
    out: dict[str, float] = {"members": int(has.sum())}
    for k in ks:
        h = hit[has, :k]
        nt = n_truth[has]
        hits = h.sum(axis=1)
        denom = np.minimum(nt, k)
        idcg = np.cumsum(discounts)[np.maximum(denom, 1) - 1]
        precision_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
        out[f"recall@{k}"] = _mean(hits / np.maximum(nt, 1))
        out[f"ndcg@{k}"] = _mean((h * discounts[:k]).sum(axis=1) / idcg)
        out[f"hr@{k}"] = _mean(hits > 0)
        out[f"map@{k}"] = _mean((precision_at * h).sum(axis=1) / np.maximum(denom, 1))
        shown = top[:, :k].ravel()
        out[f"coverage@{k}"] = float(len(np.unique(shown[shown >= 0])) / n_items) if n_items else 0.0
    return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else 0.0
