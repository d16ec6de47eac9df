"""Candidate sources: one file each, one job each (bring items a slot might show, best first).

Every source has a ``name`` (used in recipes, the trace and the served items' reasons) and
``fetch(q, n) -> list[Candidate]``; the shared contract test in tests/unit/test_sources_contract.py
runs against each of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tests.reference_engine.domain import Candidate, Reason


def top(items: np.ndarray, scores: np.ndarray, n: int) -> tuple[list[int], list[float]]:
    """The best ``n`` of (items, scores), best first (ties keep the given order), as Python lists."""
    items = np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(items) > n:
        pick = np.argpartition(-scores, n - 1)[:n] if n > 0 else np.zeros(0, dtype=np.int64)
        items, scores = items[pick], scores[pick]
    order = np.argsort(-scores, kind="stable")
    return items[order].tolist(), scores[order].tolist()


def make(source: str, items: list[int], scores: list[float], details: Sequence[str]) -> list[Candidate]:
    """Candidates in the given order, each with its source reason."""
    return [Candidate(i, s, source, [Reason(source, "source", d)])
            for i, s, d in zip(items, scores, details, strict=True)]


def candidates(source: str, items: np.ndarray, scores: np.ndarray, n: int,
               detail: Callable[[int, float], str]) -> list[Candidate]:
    """The top ``n`` of (items, scores), best first, each with its source reason."""
    best, values = top(items, scores, n)
    return make(source, best, values, [detail(i, s) for i, s in zip(best, values, strict=True)])
