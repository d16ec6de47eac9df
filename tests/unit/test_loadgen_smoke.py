"""Smoke test of the load generator against the echo server, in one process (well under 5 s).

The load tests themselves are separate commands (load_tests/README.md), never part of this suite.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from load_tests.echo_server import ECHO_VERSION, serve
from load_tests.loadgen import (
    ClientPlan,
    Population,
    RunSpec,
    Workload,
    _client,
    build_requests,
    parse_mix,
    summarise,
)
from service.api.gen.mallrec.v1 import recommender_pb2 as pb


def test_parse_mix_normalises_and_expands_slots():
    mix = parse_mix("recommend:slots=3,page=1")
    assert mix == pytest.approx({"recommend:search_box": 0.25, "recommend:check_in": 0.25,
                                 "recommend:delivery": 0.25, "page": 0.25})
    with pytest.raises(ValueError):
        parse_mix("recommend=1")


def test_requests_follow_the_mix_and_member_draw():
    pop = Population.synthetic(members=1000, items=50)
    wl = Workload(parse_mix("recommend:delivery=1,track=1"), unknown_share=0.1)
    reqs = build_requests(pop, wl, 1000, seed=1)
    ops = [op for op, _, _ in reqs]
    assert 0.4 < ops.count("track") / len(ops) < 0.6
    delivery = [pb.RecommendRequest.FromString(b) for op, _, b in reqs if op == "recommend:delivery"]
    assert all(r.context.order_item_ids and r.count == 10 for r in delivery)
    unknown = sum(r.member_id.startswith("unknown-") for r in delivery) / len(delivery)
    assert 0.03 < unknown < 0.18
    assert build_requests(pop, wl, 1000, seed=1) == reqs  # deterministic per seed
    assert build_requests(pop, wl, 1000, seed=2) != reqs


def test_generator_against_echo_server_closed_and_open_loop():
    pop = Population.synthetic()
    wl = Workload(parse_mix("recommend:slots=1,page=1,track=1"))
    reqs = build_requests(pop, wl, 200, seed=0)

    async def go():
        ready, stop = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(serve("127.0.0.1", 0, ready=ready, stop=stop))
        await ready.wait()
        target = f"127.0.0.1:{ready.port}"
        try:
            closed = await _client(ClientPlan(target, reqs, time.monotonic(), None, 300, concurrency=8,
                                              channels=2))
            opened = await _client(ClientPlan(target, reqs, time.monotonic(), 0.5, None, rps=200))
        finally:
            stop.set()
            await server
        return closed, opened

    closed, opened = asyncio.run(go())
    assert len(closed.latency) == 300 and set(closed.codes) == {"OK"}
    tracks = sum(op == "track" for op in closed.ops)  # TrackEvents answers carry no model version
    assert closed.versions[ECHO_VERSION] == 300 - tracks
    assert 80 <= len(opened.latency) <= 101  # 0.5 s at 200 RPS, on schedule
    rep = summarise([closed], closed.first_send, RunSpec("echo", duration=None, count=300, warmup=0), wl)
    assert rep["requests_ok"] == 300 and rep["errors"] == {} and rep["rps"] > 0
    assert set(rep["by_op"]) == {"recommend:search_box", "recommend:check_in", "recommend:delivery",
                                 "page", "track"}
