"""NormPrunedSearch's batched shortlist gives every query what its own search gives (the trainer's
pools search a batch of members at once and must get the service's per-request answers)."""

from __future__ import annotations

import numpy as np
import pytest

from service.model import NormPrunedSearch


def _vectors(rng: np.random.Generator, n: int, dim: int, spread: float) -> np.ndarray:
    lengths = np.exp(rng.normal(0, spread, n))  # ALS items' lengths span orders of magnitude
    v = rng.normal(size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True) * lengths[:, None]).astype(np.float32)


@pytest.mark.parametrize("spread, most", [(1.5, 400), (0.5, 20)])  # the second reads in many rounds
def test_batched_shortlist_gives_each_query_its_own_search(spread: float, most: int) -> None:
    rng = np.random.default_rng(3)
    search = NormPrunedSearch(_vectors(rng, 5000, 16, spread), first_block=16)
    queries = rng.normal(size=(70, 16)).astype(np.float32)
    queries[5] = 0.0  # no taste: nothing found
    k = rng.integers(1, most, len(queries))
    k[7] = 0  # nothing asked
    if most > 100:
        k[9] = 6000  # more than the catalogue (the whole batch then reads it all at once)
    short = search.shortlist(queries, np.minimum(k, search.n))
    reads = []
    for q, s, n in zip(queries, short, k.tolist(), strict=True):
        items, scores, read = search.search(q, n)
        reads.append(read)
        got_items, got_scores = search.rescore(q, s, min(n, search.n))
        assert got_items.tolist() == items.tolist()
        assert got_scores.tolist() == scores.tolist()
    assert 0 < min(r for r in reads if r) < search.n, "some searches stop early, so pruning is exercised"
