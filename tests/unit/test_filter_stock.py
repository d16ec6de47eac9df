from __future__ import annotations

import numpy as np

from service.filters.stock import InStock
from tests.fixtures.service import slot_query


def test_out_of_stock_goes_unknown_stock_stays() -> None:
    keep = InStock().keep(slot_query(), np.array([0, 2, 3]))  # stock 0, -1 (unknown), 10
    assert keep.tolist() == [False, True, True]
