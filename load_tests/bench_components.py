"""Where a slot's CPU goes, component by component, in process (the servicer called directly).

    .venv/bin/python -m load_tests.bench_components --models MODELS_DIR [--n 400]
        [--ops recommend:search_box,recommend:check_in,recommend:delivery]

Runs the load test's traffic for each op as ``bench_pipeline`` does (in-memory state store) and
times every component of the built-in recipes (each source's ``fetch``, each filter's ``keep``, the
blend, each step's ``apply``), the re-ranker's feature rows and its ONNX call, the served rows'
reasons and the engine's ``run`` as a whole. Prints CPU-clock microseconds per request and calls per
request, dearest first. The wrappers cost ~1 us per call, so small components read a little high;
the request total is measured without the wrappers, in a pass of its own.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `mallrec serve` runs

import argparse  # noqa: E402
import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from load_tests.bench_pipeline import _TYPES, _Context
from load_tests.loadgen import Population, Workload, build_requests
from service.grpc_api import RecommenderServicer
from service.metrics import Metrics
from service.model import ServingModel
from service.recommender import Recommender
from service.reload import Holder
from service.rerank.runtime import rerank_runtime
from service.slots import SlotRegistry, default_registry
from service.state.memory import InMemoryStateStore

OPS = ("recommend:search_box", "recommend:check_in", "recommend:delivery")


class Timers:
    """CPU time and calls per label, from wrappers put on classes and modules for the run."""

    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        cpu, calls, clock = self.cpu, self.calls, time.process_time

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return original(*args, **kwargs)
            finally:
                cpu[label] += clock() - t0
                calls[label] += 1

        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, original))

    def clear(self) -> None:
        self.cpu.clear()
        self.calls.clear()

    def undo(self) -> None:
        for step in reversed(self._undo):
            step()
        self._undo.clear()


def instrument(timers: Timers, registry: SlotRegistry) -> None:
    """Wrap each component class of the registry's recipes once, plus the engine's shared parts."""
    import service.recommender as recommender
    import service.steps.rerank as rerank_step
    from service.engine.slate import Slate
    from service.rerank.scorer import Reranker

    seen: set[type] = set()

    def once(component: Any, attr: str, label: str) -> None:
        if type(component) not in seen:
            seen.add(type(component))
            timers.wrap(type(component), attr, label)

    for name in registry.names():
        recipe = registry.get(name)
        assert recipe is not None
        for use in recipe.sources:
            once(use.source, "fetch", f"source {use.source.name}")
        for f in recipe.filters:
            once(f, "keep", f"filter {f.name}")
        once(recipe.blend, "blend", "blend")
        for s in recipe.steps:
            once(s, "apply", f"step {s.name}")
    timers.wrap(rerank_step, "compute", "  rerank: feature rows")
    timers.wrap(Reranker, "score", "  rerank: ONNX scoring")
    timers.wrap(Slate, "reasons", "reasons (served rows)")
    timers.wrap(recommender, "run", "engine run (all of the above)")  # the name it imported


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--n", type=int, default=400, help="requests per op")
    ap.add_argument("--ops", default=",".join(OPS))
    args = ap.parse_args(argv)
    model = ServingModel.load(args.models)
    rerank_runtime(model)
    pop = Population.from_models(args.models)
    registry = default_registry()
    rec = Recommender(Holder(model), Holder(registry), InMemoryStateStore())
    servicer = RecommenderServicer(rec, Metrics())
    ctx = _Context()
    timers = Timers()

    async def go() -> None:
        for op in args.ops.split(","):
            calls = []
            for _, path, raw in build_requests(pop, Workload({op: 1.0}), args.n, seed=1):
                method = path.rsplit("/", 1)[1]
                calls.append((getattr(servicer, method), _TYPES[method].FromString(raw)))
            for fn, req in calls[:50]:  # warm-up: caches, first-use builds
                await fn(req, ctx)
            t0 = time.process_time()
            for fn, req in calls:
                await fn(req, ctx)
            total = time.process_time() - t0
            instrument(timers, registry)
            timers.clear()
            for fn, req in calls:
                await fn(req, ctx)
            timers.undo()
            n = len(calls)
            print(f"{op}: {1e6 * total / n:,.0f} CPU us per request ({n} requests, unwrapped pass)")
            for label, cpu in sorted(timers.cpu.items(), key=lambda kv: -kv[1]):
                print(f"  {label:34s} {1e6 * cpu / n:8.0f} us  {timers.calls[label] / n:5.1f} calls/request")

    asyncio.run(go())


if __name__ == "__main__":
    main()
