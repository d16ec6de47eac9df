"""not_in: the filters' ``~np.isin`` with fast paths for no and few values."""

from __future__ import annotations

import numpy as np

from service.filters import not_in


def test_not_in_is_not_isin_for_none_few_and_many_values() -> None:
    items = np.arange(40, dtype=np.int64)
    for values in ([], [3], {5, 7, 39}, list(range(0, 60, 2)), (41,)):
        assert not_in(items, values).tolist() == (~np.isin(items, list(values))).tolist()
    assert not_in(np.zeros(0, dtype=np.int64), [1]).tolist() == []


def test_the_sorted_search_path_matches_isin_on_random_pages() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        items = rng.integers(0, 300, int(rng.integers(0, 120))).astype(np.int64)
        values = set(rng.integers(0, 320, int(rng.integers(5, 40))).tolist())  # some above every item
        assert not_in(items, values).tolist() == (~np.isin(items, list(values))).tolist()
    assert not_in(np.zeros(0, dtype=np.int64), list(range(10))).tolist() == []
