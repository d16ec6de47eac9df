"""A served model is freed by reference counting the moment its last request ends.

The server freezes the garbage collector after a swap (service/app.py): objects alive then are never
traversed again, so a model kept alive by a reference cycle would never be freed at all. This
test serves every built-in slot, the search box and the re-ranker on a model, then drops it with
the cyclic collector off: the model must already be gone.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

from service.domain import Context, PageRequest, SlotAsk
from service.recommender import Recommender
from service.reload import Holder
from service.rerank.runtime import rerank_runtime
from service.slots import default_registry
from service.state.memory import InMemoryStateStore
from tests.fixtures.service import NOW
from tests.unit.test_step_rerank import column_model, model_with

PAGE = (SlotAsk("search_box", 8), SlotAsk("check_in", 8), SlotAsk("delivery", 8))


def test_a_model_that_served_requests_is_freed_without_the_cyclic_gc() -> None:
    model = model_with(column_model("fs_rank"), "lifetime")
    assert rerank_runtime(model).ready
    rec = Recommender(Holder(model), Holder(default_registry()), InMemoryStateStore(), clock=lambda: NOW)
    page = asyncio.run(rec.recommend(PageRequest("m001", PAGE, Context(query="acme",
                                                                       order_item_ids=("i012",)))))
    assert all(s.items for s in page.slots)
    gone = [weakref.ref(x) for x in (model, model.bundle, rerank_runtime(model))]
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        rec.models.swap(None)  # type: ignore[arg-type]
        del model, rec, page
        alive = [type(ref()).__name__ for ref in gone if ref() is not None]
        assert not alive, f"a reference cycle keeps {alive} alive until a full GC pass"
    finally:
        if was_enabled:
            gc.enable()
