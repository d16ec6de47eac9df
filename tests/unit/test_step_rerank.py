"""The re-rank step: the learned order when on, boosts kept, positions held after it, and a clean
fall-back (first-stage order, degraded) when the model is missing or broken.

The models here are real ONNX graphs run by onnxruntime through the service's scorer, small enough to
read: ``column_model("fs_rank")`` scores each candidate by its first-stage position, so the learned
order is the first-stage order reversed, and every expectation can be written down.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from service.domain import PageRequest, SlotAsk, SlotResult
from service.engine.run import run
from service.model import ServingModel
from service.recommender import Recommender
from service.reload import Holder
from service.rerank.features import FEATURE_NAMES, FEATURE_VERSION
from service.rerank.runtime import rerank_runtime
from service.slots import default_registry
from service.state.memory import InMemoryStateStore
from tests.fixtures.rules import POPULAR, ids, problems, registry, serve, steps
from tests.fixtures.service import NOW, slot_query, tiny_model
from tests.fixtures.tiny_bundle import make_bundle

ITEMS = [f"i{i:03d}" for i in range(2, 14)]  # popular order; i005, i010 vegan; i003, i006, i009, i012 acme
ONLY = f'[[rules]]\nname = "Only"\ntype = "include"\nitems = {ITEMS}\n'.replace("'", '"')
SMALL = ONLY + POPULAR  # 12 candidates: a slot of 12 serves all of them
RERANKED = SMALL + "rerank = true\n"
N = len(ITEMS)


def column_model(feature: str, weight: float = 1.0, divide_by_zero: bool = False) -> bytes:
    """An ONNX model scoring each row by ``weight * x[feature]`` (or x / 0: non-finite scores)."""
    j = FEATURE_NAMES.index(feature)
    nodes = [helper.make_node("Gather", ["x", "col"], ["picked"], axis=1),
             helper.make_node("Div" if divide_by_zero else "Mul", ["picked", "w"], ["score"])]
    graph = helper.make_graph(
        nodes, "column", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, len(FEATURE_NAMES)])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor("col", TensorProto.INT64, [1], [j]),
         helper.make_tensor("w", TensorProto.FLOAT, [], [0.0 if divide_by_zero else weight])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def model_with(onnx_bytes: bytes | None, version: str,
               feature_version: int = FEATURE_VERSION) -> ServingModel:
    bundle = make_bundle(NOW, version=version)
    bundle.reranker_onnx = onnx_bytes
    bundle.manifest["reranker"] = {"feature_names": list(FEATURE_NAMES), "feature_version": feature_version}
    return ServingModel(bundle)


@lru_cache(maxsize=1)
def reverse_model() -> ServingModel:
    """Re-ranks every slot into the reverse of its first-stage order."""
    return model_with(column_model("fs_rank"), "tiny-reverse")


def rerank_step(result: SlotResult):  # type: ignore[no-untyped-def]
    return next(s for s in result.trace.steps if s.step == "rerank")


# --------------------------------------------------------------------------- on


def test_on_serves_the_models_order_in_one_batch_and_says_which_items_it_moved() -> None:
    first = serve(registry(SMALL), count=N, model=reverse_model())
    runtime = rerank_runtime(reverse_model())
    calls: list[int] = []
    score = runtime.scorer.score  # type: ignore[union-attr]
    runtime.scorer.score = lambda x: calls.append(len(x)) or score(x)  # type: ignore[union-attr,method-assign]
    try:
        result = serve(registry(RERANKED), count=N, model=reverse_model())
    finally:
        del runtime.scorer.score  # type: ignore[union-attr]
    assert ids(first) == ITEMS and ids(result) == ITEMS[::-1]
    assert calls == [N]  # one batch with every candidate
    assert result.degraded == ()
    step = rerank_step(result)
    assert step.kind == "rerank" and f"{N} candidates scored in one batch, {N} moved" in step.note
    top = result.items[0]
    assert top.item_id == ITEMS[-1] and top.reasons[-1].step == "rerank"
    assert top.reasons[-1].kind == "rerank" and top.reasons[-1].detail == f"re-ranked up from {N} to 1"
    assert [i.score for i in result.items] == pytest.approx([1 - p / N for p in range(N)], abs=1e-6)


def test_a_model_that_keeps_the_order_moves_nothing_and_adds_no_reason() -> None:
    keep = model_with(column_model("fs_rank", weight=-1.0), "tiny-keep")
    first = serve(registry(SMALL), count=N, model=keep)
    result = serve(registry(RERANKED), count=N, model=keep)
    assert ids(result) == ids(first) and "0 moved" in rerank_step(result).note
    assert not any(r.step == "rerank" for i in result.items for r in i.reasons)


# --------------------------------------------------------------------------- boosts and positions


def test_boosts_are_applied_again_to_the_learned_order() -> None:
    boost = '[[slots.t.rules]]\nname = "Vegan week"\ntype = "boost"\ntag = "vegan"\nfactor = 3\n'
    result = serve(registry(RERANKED + boost), count=N, model=reverse_model())
    # the model's order (reversed), scored 1 - position / n like the blend, then x3 for vegan items
    learned = ITEMS[::-1]
    score = {item: (1 - p / N) * (3 if item in ("i005", "i010") else 1) for p, item in enumerate(learned)}
    expected = sorted(learned, key=lambda i: -score[i])
    assert ids(result) == expected and expected[:3] == ["i010", "i013", "i005"]  # i005: 9th -> 3rd
    assert [i.score for i in result.items] == pytest.approx(sorted(score.values(), reverse=True), abs=1e-6)
    assert "Vegan week" in steps(result, "i005") and "Vegan week" in steps(result, "i010")  # reasons stay
    boosted_only = ids(serve(registry(SMALL + boost), count=N, model=reverse_model()))
    assert boosted_only[0] == "i005" and boosted_only != ids(result)  # the same boost on the blend


def test_a_strong_boost_and_a_strong_bury_outlast_the_re_ranker() -> None:
    first = ITEMS
    hero, dud = first[0], first[-1]  # the model would put hero last and dud first
    rules = (f'[[slots.t.rules]]\nname = "Hero"\ntype = "boost"\nitems = ["{hero}"]\nfactor = 100\n'
             f'[[slots.t.rules]]\nname = "Dud"\ntype = "bury"\nitems = ["{dud}"]\nfactor = 0.01\n')
    result = ids(serve(registry(RERANKED + rules), count=N, model=reverse_model()))
    assert result[0] == hero and result[-1] == dud
    assert result[1:-1] == first[1:-1][::-1]


def test_query_matches_stay_ahead_in_the_search_box_and_are_re_ranked_among_themselves() -> None:
    search = ONLY + ('[slots.t]\nsources = [{ use = "query_match" }, { use = "popular" }]\n'
                     'steps = ["query_first"]\nbackfill = "none"\n')
    before = ids(serve(registry(search), count=N, model=reverse_model(), query="acme"))
    after = ids(serve(registry(search + "rerank = true\n"), count=N, model=reverse_model(), query="acme"))
    acme = ["i003", "i006", "i009", "i012"]
    assert sorted(before[:4]) == acme and sorted(after) == sorted(before) == ITEMS
    assert after[:4] == before[:4][::-1]  # matches first, in the model's order
    assert after[4:] == before[4:][::-1]


def test_pins_and_diversity_hold_after_the_re_ranker() -> None:
    pinned = ITEMS[0]  # the model puts it last
    rules = (f'[[slots.t.rules]]\nname = "Hero"\ntype = "pin"\nitem = "{pinned}"\nposition = 2\n'
             '[[slots.t.rules]]\nname = "Mix"\ntype = "diversity"\nby = "brand"\nmax = 1\ntop = 3\n')
    reg = registry(RERANKED + rules)
    recipe = reg.get("t")
    assert recipe is not None
    assert [s.name for s in recipe.steps] == ["rerank", "Mix", "Hero", "precedence"]
    result = serve(reg, count=N, model=reverse_model())
    served = ids(result)
    assert served[1] == pinned and result.items[1].reasons[-1].step == "Hero"
    brands = [str(tiny_model().bundle.items.brand[int(i[1:])]) for i in served[:3]]
    assert len(set(brands)) == 3 and result.degraded == ()


def test_a_built_in_slots_re_ranker_runs_after_the_files_boosts() -> None:
    reg = registry('[[slots.check_in.rules]]\nname = "B"\ntype = "boost"\ntag = "vegan"\nfactor = 2\n')
    check_in = reg.get("check_in")
    assert check_in is not None and [s.name for s in check_in.steps] == ["B", "rerank"]
    off = registry('[slots.check_in]\nrerank = false\n').get("check_in")
    assert off is not None and [s.name for s in off.steps] == []


# --------------------------------------------------------------------------- defaults


def test_built_in_slots_re_rank_when_the_bundle_has_a_model_and_quietly_skip_when_not() -> None:
    reg = default_registry()
    delivery = reg.get("delivery")
    assert delivery is not None and not any(s.kind == "rerank" for s in delivery.steps)
    for slot in ("check_in", "search_box"):
        recipe = reg.get(slot)
        assert recipe is not None
        with_model = run(recipe, slot_query("m003", count=10, slot=slot, query="acme", model=reverse_model()))
        assert with_model.degraded == () and rerank_step(with_model).moved, slot
        without = run(recipe, slot_query("m003", count=10, slot=slot, query="acme"))
        assert without.degraded == ()
        assert "has no re-ranker: first-stage order kept" in rerank_step(without).note


# --------------------------------------------------------------------------- falling back


def assert_fell_back(model: ServingModel, why: str) -> None:
    first = serve(registry(SMALL), count=N, model=model)
    result = serve(registry(RERANKED), count=N, model=model)
    assert ids(result) == ids(first) and [i.score for i in result.items] == [i.score for i in first.items]
    assert result.degraded == ("rerank",)
    assert "first-stage order kept (degraded)" in rerank_step(result).note and why in rerank_step(result).note
    assert not any(r.step == "rerank" for i in result.items for r in i.reasons)


def test_rerank_on_without_a_model_falls_back_degraded() -> None:
    assert_fell_back(tiny_model(), "model tiny has no re-ranker")
    warning = [p for p in problems(RERANKED, model=tiny_model()) if p.field == "rerank"]
    assert warning and warning[0].level == "warning" and "has no re-ranker" in warning[0].message


def test_a_model_that_cannot_load_falls_back_degraded() -> None:
    assert_fell_back(model_with(b"not an onnx model", "tiny-garbage"), "cannot load the re-ranker model")
    assert_fell_back(model_with(column_model("fs_rank"), "tiny-v0", feature_version=FEATURE_VERSION + 1),
                     "retrain the bundle")


def test_a_model_that_fails_when_scoring_falls_back_degraded_and_is_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    nan = model_with(column_model("fs_rank", divide_by_zero=True), "tiny-nan")
    with caplog.at_level(logging.ERROR, logger="service.rerank.runtime"):
        assert_fell_back(nan, "non-finite scores")
        assert_fell_back(nan, "non-finite scores")
    assert len([r for r in caplog.records if "re-ranker failed" in r.message]) == 1


def test_an_exception_in_the_features_falls_back_degraded(monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_with(column_model("fs_rank"), "tiny-features")

    def broken(*args: object) -> np.ndarray:
        raise IndexError("index 99 is out of bounds")

    monkeypatch.setattr("service.steps.rerank.compute", broken)
    assert_fell_back(model, "IndexError: index 99 is out of bounds")


def test_the_answer_says_degraded_and_why_and_served_items_are_still_counted() -> None:
    store = InMemoryStateStore()
    rec = Recommender(Holder(model_with(b"\x00broken", "tiny-broken")), Holder(default_registry()), store,
                      clock=lambda: NOW)

    async def go():  # type: ignore[no-untyped-def]
        page = await rec.recommend(PageRequest("m001", (SlotAsk("check_in", 5), SlotAsk("delivery", 5))))
        await rec.drain()
        return page

    page = asyncio.run(go())
    assert page.degraded and page.degraded_reasons == ("rerank",)
    assert [s.degraded for s in page.slots] == [("rerank",), ()]
    assert len(page.slots[0].items) == 5
    assert asyncio.run(store.read("m001", NOW)).impressions  # not a state-store failure: still recorded


def test_the_runtime_is_built_once_per_model_by_the_servers_loader(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from service.app import load_model
    from service.model_bundle import publish
    from service.rerank.runtime import _RUNTIMES

    bundle = make_bundle(NOW, version="tiny-published")
    bundle.reranker_onnx = column_model("fs_rank")
    bundle.manifest["reranker"] = {"feature_names": list(FEATURE_NAMES), "feature_version": FEATURE_VERSION}
    publish(bundle, tmp_path)
    model = load_model(tmp_path)
    assert model in _RUNTIMES and rerank_runtime(model).ready  # built in the reload thread, before requests
    assert rerank_runtime(model) is rerank_runtime(model)
