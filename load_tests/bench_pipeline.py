"""In-process CPU cost of the gRPC methods, without the network: the servicer called directly.

    .venv/bin/python -m load_tests.bench_pipeline --models MODELS_DIR [--n 2000] [--profile OUT.txt]
        [--redis redis://127.0.0.1:6379/14]

Loads the live bundle once, draws the load test's traffic (``loadgen.build_requests``: hot members,
unknown ids, search words, delivered orders), runs each op's requests through
``RecommenderServicer`` (protobuf request in, protobuf response out) against an in-memory state
store (or, with ``--redis URL``, the Redis store under a throwaway key prefix, so the client's
own CPU for its round trips counts too), and prints CPU ms per request (``time.process_time``,
fastest of ``--repeat`` passes) per op. What a gRPC run adds on top (the event loop, HTTP/2, and
without ``--redis`` the Redis round trips) is not in these figures; they are the part this code
controls, and quiet enough to compare two changes on a busy box. ``--profile`` writes cProfile's
top functions by cumulative and own time.
"""

from __future__ import annotations

import os

# One BLAS thread, as `mallrec serve` runs (service/cli.py): OpenBLAS threads on the tiny matrix
# products of a request burn a second core (measured: search_box 4.15 CPU ms/req with the default
# threads, 1.88 with one), which the server never pays.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import asyncio
import cProfile
import io
import os
import pstats
import time
from pathlib import Path
from typing import Any

from load_tests.loadgen import Population, Workload, build_requests
from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.grpc_api import RecommenderServicer
from service.metrics import Metrics
from service.model import ServingModel
from service.recommender import Recommender
from service.reload import Holder
from service.rerank.runtime import rerank_runtime
from service.slots import default_registry
from service.state.memory import InMemoryStateStore
from service.state.redis_store import RedisStateStore

OPS = ("recommend:search_box", "recommend:check_in", "recommend:delivery", "page", "track")
_TYPES = {"Recommend": pb.RecommendRequest, "RecommendPage": pb.RecommendPageRequest,
          "TrackEvents": pb.TrackEventsRequest}


class _Context:
    """The bits of grpc.aio.ServicerContext the servicer reads."""

    def time_remaining(self) -> float:
        return 2.0

    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")

    async def abort_with_status(self, status: Any) -> None:
        raise RuntimeError(str(status))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--n", type=int, default=1500, help="requests per op")
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--repeat", type=int, default=3, help="passes per op; the fastest is reported "
                    "(a busy box only ever adds time)")
    ap.add_argument("--profile", type=Path, help="cProfile summary of every op together -> this file")
    ap.add_argument("--redis", metavar="URL", help="use the Redis state store at URL (keys under a "
                    "throwaway prefix, deleted at the end) instead of the in-memory one")
    args = ap.parse_args(argv)
    model = ServingModel.load(args.models)
    rerank_runtime(model)
    pop = Population.from_models(args.models)
    prefix = f"mallrec-bench:{os.getpid()}:"
    store = RedisStateStore(args.redis, prefix=prefix, timeout=1.0) if args.redis else InMemoryStateStore()
    rec = Recommender(Holder(model), Holder(default_registry()), store)
    servicer = RecommenderServicer(rec, Metrics())
    ctx = _Context()
    prof = cProfile.Profile() if args.profile else None

    async def go() -> None:
        for op in args.ops.split(","):
            reqs = build_requests(pop, Workload({op: 1.0}), args.n, seed=1)
            calls = []
            for _, path, raw in reqs:
                method = path.rsplit("/", 1)[1]
                calls.append((getattr(servicer, method), _TYPES[method].FromString(raw)))
            for fn, req in calls[:50]:  # warm-up: caches, first-use builds
                await fn(req, ctx)
            cpu = wall = float("inf")
            for _ in range(args.repeat):
                if prof:
                    prof.enable()
                t0, w0 = time.process_time(), time.perf_counter()
                for fn, req in calls:
                    await fn(req, ctx)
                cpu, wall = min(cpu, time.process_time() - t0), min(wall, time.perf_counter() - w0)
                if prof:
                    prof.disable()
                await rec.drain()
                await asyncio.sleep(0.05)  # let a write-behind store flush what the pass queued
            print(f"{op:24s} {1000 * cpu / len(calls):7.3f} CPU ms/req  {1000 * wall / len(calls):7.3f} "
                  f"wall ms/req  ({len(calls)} requests)", flush=True)
        await store.close()

    try:
        asyncio.run(go())
    finally:
        if args.redis:
            _delete_prefix(args.redis, prefix)
    if prof and args.profile:
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_stats(40)
        args.profile.write_text(out.getvalue())
        print(f"profile -> {args.profile}")


def _delete_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    finally:
        client.close()


if __name__ == "__main__":
    main()
