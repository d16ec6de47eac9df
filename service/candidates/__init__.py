"""Candidate sources: one file each, one job each (bring items a slot might show, best first).

Every source has a ``name`` (used in recipes, the trace and the served items' reasons) and
``fetch(q, n) -> Found``: item and score arrays, best first, and how to explain the k-th of them
(called only for the rows that are served). The shared contract test in
tests/unit/test_sources_contract.py runs against each of them.
"""

from __future__ import annotations

import numpy as np

from service.engine.slate import Explain, Found


def top(items: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``n`` of (items, scores), best first (ties keep the given order)."""
    items = np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(items) > n:
        pick = np.argpartition(-scores, n - 1)[:n] if n > 0 else np.zeros(0, dtype=np.int64)
        items, scores = items[pick], scores[pick]
    order = np.argsort(-scores, kind="stable")
    return items[order], scores[order]


def best(items: np.ndarray, scores: np.ndarray, n: int, explain: Explain) -> Found:
    """The top ``n`` of (items, scores), best first, explained by ``explain``."""
    found, values = top(items, scores, n)
    return Found(found, values, explain)


def same(text: str) -> Explain:
    """One reason for every row."""
    return lambda k: text
