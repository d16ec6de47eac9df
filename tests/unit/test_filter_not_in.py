"""not_in: the filters' ``~np.isin`` with fast paths for no and few values."""

from __future__ import annotations

import numpy as np

from service.filters import not_in


def test_not_in_is_not_isin_for_none_few_and_many_values() -> None:
    items = np.arange(40, dtype=np.int64)
    for values in ([], [3], {5, 7, 39}, list(range(0, 60, 2)), (41,)):
        assert not_in(items, values).tolist() == (~np.isin(items, list(values))).tolist()
    assert not_in(np.zeros(0, dtype=np.int64), [1]).tolist() == []
