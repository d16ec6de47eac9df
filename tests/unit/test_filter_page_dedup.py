from __future__ import annotations

import numpy as np

from service.filters.page_dedup import NotOnPage
from tests.fixtures.service import slot_query


def test_items_already_on_the_page_go() -> None:
    assert NotOnPage().keep(slot_query(exclude={7}), np.array([7, 8])).tolist() == [False, True]
    assert NotOnPage().keep(slot_query(), np.array([7, 8])).tolist() == [True, True]
