from __future__ import annotations

import numpy as np

from service.filters.just_ordered import NotJustOrdered
from tests.fixtures.service import slot_query


def test_items_of_the_delivered_order_go() -> None:
    q = slot_query(order=("i005", "unknown"))
    assert NotJustOrdered().keep(q, np.array([5, 6])).tolist() == [False, True]
    assert NotJustOrdered().keep(slot_query(), np.array([5, 6])).tolist() == [True, True]
