from __future__ import annotations

import numpy as np

from service.filters.on_shelf import OnShelf
from tests.fixtures.service import slot_query


def test_off_shelf_items_go() -> None:
    assert OnShelf().keep(slot_query(), np.array([1, 2])).tolist() == [False, True]
