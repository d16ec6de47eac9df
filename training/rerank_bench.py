"""Latency of the serving path of the re-ranker: features + ONNX for one slot's candidate batch.

    python -m training.rerank_bench [--items 85000] [--candidates 200] [--trees 100] [--leaves 31]
    python -m training.rerank_bench --models MODELS_DIR [--members 300]

Self-contained (a synthetic bundle of taobao-2h's size, a model fitted on random labels), so it
runs anywhere; the tree count and depth, not what the trees learned, set ONNX's cost. Prints the
median and p99 per call; the service pays member_inputs + member stats once per request and
compute + score once per slot. With ``--models``: the service's own ``rerank`` step, timed in the
slot pipeline on a published bundle and its trained re-ranker (the trace's step time, and its CPU
time), for check_in and search_box at a few sizes, over the bundle's members with a history.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest.mock import patch

import numpy as np

from service.model_bundle import ItemTable, MemberTable
from service.rerank.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    N_FEATURES,
    Candidates,
    FeatureContext,
    compute,
)
from service.rerank.scorer import Reranker


def synthetic_context(n_items: int, n_members: int = 1000, factors: int = 64, history: int = 20,
                      seed: int = 0) -> FeatureContext:
    rng = np.random.default_rng(seed)
    items = ItemTable(item_id=np.arange(n_items).astype(str),
                      category=rng.integers(0, 500, n_items).astype(str), brand=np.full(n_items, ""),
                      price=rng.uniform(5, 300, n_items), stock=rng.integers(-1, 50, n_items),
                      on_shelf=np.ones(n_items, bool), launched_at=rng.integers(0, 10**8, n_items),
                      tags=np.full(n_items, ""))
    members = MemberTable(np.arange(n_members).astype(str), rng.choice(["", "silver", "gold"], n_members),
                          rng.uniform(0, 1000, n_members))
    n_hist = n_members * history
    arrays: dict[str, np.ndarray] = {
        "item_factors": rng.normal(size=(n_items, factors)).astype(np.float32),
        "popularity_global": rng.pareto(1.5, n_items).astype(np.float32),
        "popularity_trending": rng.pareto(1.5, n_items).astype(np.float32),
        "neighbour_items": rng.integers(0, n_items, (n_items, 50)).astype(np.int32),
        "neighbour_scores": rng.uniform(0, 1, (n_items, 50)).astype(np.float32),
        "history_indptr": np.arange(0, n_hist + 1, history, dtype=np.int64),
        "history_items": rng.integers(0, n_items, n_hist).astype(np.int32),
        "history_last_ts": rng.integers(0, 10**8, n_hist),
        "history_events": rng.integers(1, 32, n_hist).astype(np.uint8),
        "history_purchases": rng.integers(0, 2, n_hist).astype(np.int32),
    }
    return FeatureContext(items, members, arrays)


def random_model(trees: int, leaves: int, seed: int = 0) -> bytes:
    import lightgbm as lgb

    from training.reranker import export_onnx

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20_000, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, 3, len(x))
    booster = lgb.train({"objective": "lambdarank", "num_leaves": leaves, "min_data_in_leaf": 5,
                         "verbose": -1, "num_threads": 1}, lgb.Dataset(x, y, group=[200] * 100),
                        num_boost_round=trees)
    return export_onnx(booster)


def step_in_pipeline(models: str, n_members: int) -> None:
    """p50 / p99 of the rerank step of the built-in slots, as the server runs them (no online state)."""
    from service.app import load_model
    from service.domain import Context, OnlineState
    from service.engine.query import Report, SlotQuery
    from service.engine.run import run
    from service.engine.slate import Slate
    from service.profile import MemberProfile
    from service.rerank.runtime import rerank_runtime
    from service.slots import default_registry
    from service.steps.rerank import Rerank

    t0 = time.perf_counter()
    model = load_model(Path(models))
    runtime = rerank_runtime(model)
    if not runtime.ready:
        raise SystemExit(runtime.problem or runtime.absent)
    print(f"model {model.version}: {model.n_items} items, loaded with its re-ranker in "
          f"{time.perf_counter() - t0:.1f}s")
    b = model.bundle
    members = [str(b.members.member_id[m]) for m in np.flatnonzero(np.diff(b.history_indptr) > 0)[:n_members]]
    cpu: list[float] = []
    apply = Rerank.apply

    def timed(self: Rerank, q: SlotQuery, slate: Slate) -> Report | None:
        t = time.thread_time()
        out = apply(self, q, slate)
        cpu.append((time.thread_time() - t) * 1e3)
        return out

    registry = default_registry()
    query = Context(query=str(b.items.category[0]))
    now = time.time()
    with patch.object(Rerank, "apply", timed):  # the real step, timed in place
        for slot, count, ctx in (("check_in", 10, Context()), ("check_in", 50, Context()),
                                 ("search_box", 10, query), ("search_box", 25, query)):
            recipe = registry.get(slot)
            assert recipe is not None
            wall: list[float] = []
            sizes: list[float] = []
            for _warm in range(2):  # the second run's figures count
                cpu.clear()
                wall.clear()
                sizes.clear()
                for m in members:
                    q = SlotQuery(model, MemberProfile(model, m, OnlineState(), now), slot, count, ctx)
                    step = next(s for s in run(recipe, q).trace.steps if s.step == "rerank")
                    wall.append(step.ms)
                    sizes.append(float(step.note.split(" candidates")[0].rsplit(" ", 1)[-1]))
            print(f"  {slot:10s} count {count:3d}: {np.median(sizes):4.0f} candidates   rerank step p50 "
                  f"{np.median(wall):.2f} ms  p99 {np.percentile(wall, 99):.2f} ms   CPU p50 "
                  f"{np.median(cpu):.2f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=85_000)
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--leaves", type=int, default=31)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--models", help="time the service's rerank step on this published bundle instead")
    p.add_argument("--members", type=int, default=300)
    a = p.parse_args()
    if a.models:
        step_in_pipeline(a.models, a.members)
        return
    ctx = synthetic_context(a.items)
    scorer = Reranker(random_model(a.trees, a.leaves), FEATURE_NAMES, FEATURE_VERSION)
    rng = np.random.default_rng(1)
    vector = rng.normal(size=int(ctx.factors.shape[1])).astype(np.float32)
    sources = ["als", "similar_recent", "category_popular", "trending"]
    timings: dict[str, list[float]] = {"request: member inputs": [], "slot: features": [],
                                       "slot: onnx score": [], "total": []}
    for call in range(a.calls + 100):
        cands = Candidates.from_names(rng.choice(a.items, a.candidates, replace=False),
                                      [sources[i % 4] for i in range(a.candidates)])
        t0 = time.perf_counter()
        member = ctx.member_inputs(call % 1000, now=10**8, recent=[(5, "click", 10**8)], vector=vector)
        t1 = time.perf_counter()
        x = compute(ctx, member, cands)
        t2 = time.perf_counter()
        scorer.score(x)
        t3 = time.perf_counter()
        if call >= 100:  # warm-up
            for key, dt in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                timings[key].append(dt * 1e3)
    print(f"{a.items} items, {a.candidates} candidates, {a.trees} trees x {a.leaves} leaves, "
          f"{N_FEATURES} features, {a.calls} calls")
    for key, values in timings.items():
        v = np.asarray(values)
        print(f"  {key:24s} p50 {np.percentile(v, 50):.3f} ms   p99 {np.percentile(v, 99):.3f} ms")


if __name__ == "__main__":
    main()
