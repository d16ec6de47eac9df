"""Candidate sources: one file each, one job each (bring items a slot might show, best first).

Every source has a ``name`` (used in recipes, the trace and the served items' reasons) and
``fetch(q, n) -> list[Candidate]``; the shared contract test in tests/unit/test_sources_contract.py
runs against each of them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from service.domain import Candidate


def candidates(source: str, items: np.ndarray, scores: np.ndarray, n: int,
               detail: Callable[[int, float], str]) -> list[Candidate]:
    """The top ``n`` of (items, scores), best first, each with its source reason."""
    items = np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(items) > n:
        top = np.argpartition(-scores, n - 1)[:n] if n > 0 else np.zeros(0, dtype=np.int64)
        items, scores = items[top], scores[top]
    order = np.argsort(-scores, kind="stable")
    return [Candidate(i, s, source).because(source, "source", detail(i, s))
            for i, s in zip(items[order].tolist(), scores[order].tolist(), strict=True)]
