"""A resent TrackEvents batch counts once: in the member's state, in frequency caps and in the event
log's stream (real Redis). The response says how many were new and how many duplicates."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
import redis

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.eventlog.schema import decode
from service.state.keys import log_stream_key
from tests.fixtures.redis_server import delete_prefix, shared_url, unique_prefix
from tests.fixtures.server import serving
from tests.fixtures.tiny_bundle import publish_tiny

NOW = int(time.time())


@pytest.fixture
def redis_url():  # type: ignore[no-untyped-def]
    url, prefix = shared_url(), unique_prefix()
    yield url, prefix
    delete_prefix(url, prefix)


def _stream(url: str, prefix: str) -> list:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [decode(f["r"]) for _, f in client.xrange(log_stream_key(prefix))]
    finally:
        client.close()


def test_the_same_batch_twice_counts_once(tmp_path: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    publish_tiny(tmp_path)
    batch = [pb.Event(member_id="m002", item_id="i005", event="impression", slot="check_in", event_id="v1"),
             pb.Event(member_id="m002", item_id="i005", event="click", slot="check_in", request_id="r1"),
             pb.Event(member_id="m002", item_id="i006", event="purchase", ts=NOW - 60, quantity=2)]

    async def go() -> None:
        async with serving(tmp_path, redis_url=url, redis_prefix=prefix) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            first = await stub.TrackEvents(pb.TrackEventsRequest(events=batch))
            again = await stub.TrackEvents(pb.TrackEventsRequest(events=batch))  # a client's retry
            assert (first.accepted, first.new_events, first.duplicates) == (3, 3, 0)
            assert (again.accepted, again.new_events, again.duplicates) == (3, 0, 3)
            mixed = await stub.TrackEvents(pb.TrackEventsRequest(events=[
                batch[0], pb.Event(member_id="m002", item_id="i005", event="impression", event_id="v2")]))
            assert (mixed.new_events, mixed.duplicates) == (1, 1)
            state = await app.state.read("m002", time.time())
            assert state.impressions.get("i005") == 2, "two distinct impressions, not three"
            assert [e.event for e in state.recent] == ["purchase", "click"]
            text = app.metrics.registry.get_sample_value
            assert text("mallrec_duplicate_events_total") == 4
            assert text("mallrec_tracked_events_total", {"event": "impression"}) == 2
    asyncio.run(go())
    logged = _stream(url, prefix)
    assert sorted(r.event for r in logged) == ["click", "impression", "impression", "purchase"]
    assert len({r.event_id for r in logged}) == 4
    assert {r.event_id for r in logged if r.event == "impression"} == {"v1", "v2"}
    purchase = next(r for r in logged if r.event == "purchase")
    assert (purchase.ts, purchase.quantity) == (NOW - 60, 2)
    click = next(r for r in logged if r.event == "click")
    assert (click.request_id, click.slot) == ("r1", "check_in")


def test_a_resend_does_not_trip_a_frequency_cap_early(tmp_path: Path, redis_url: tuple[str, str]) -> None:
    """The cap counts impressions; a retried report of one impression must stay one."""
    url, prefix = redis_url
    publish_tiny(tmp_path)
    seen = pb.Event(member_id="m003", item_id="i007", event="impression", slot="check_in")  # no id: derived

    async def go() -> None:
        async with serving(tmp_path, redis_url=url, redis_prefix=prefix, record_served=False) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            for _ in range(3):
                await stub.TrackEvents(pb.TrackEventsRequest(events=[seen]))
            assert (await app.state.read("m003", time.time())).impressions == {"i007": 1}
    asyncio.run(go())


def test_served_items_are_logged_with_slot_position_and_source(tmp_path: Path,
                                                               redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    publish_tiny(tmp_path)

    async def go() -> list[str]:
        async with serving(tmp_path, redis_url=url, redis_prefix=prefix) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            resp = await stub.Recommend(pb.RecommendRequest(member_id="m001", slot="check_in", count=4,
                                                            request_id="req-7"))
            await app.recommender.drain()
            return [i.item_id for i in resp.items], [i.source for i in resp.items], resp.model_version
    items, sources, version = asyncio.run(go())
    served = [r for r in _stream(url, prefix) if r.event == "served"]
    assert [r.item_id for r in served] == items
    assert [r.position for r in served] == list(range(len(items)))
    assert [r.source for r in served] == sources
    assert {(r.slot, r.request_id, r.member_id, r.model_version) for r in served} == {
        ("check_in", "req-7", "m001", version)}
    assert len({r.event_id for r in served}) == len(served)


def test_no_event_log_means_no_stream(tmp_path: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    publish_tiny(tmp_path)

    async def go() -> None:
        async with serving(tmp_path, redis_url=url, redis_prefix=prefix, event_log=False) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            await stub.Recommend(pb.RecommendRequest(member_id="m001", slot="check_in", count=4))
            await stub.TrackEvents(pb.TrackEventsRequest(events=[
                pb.Event(member_id="m001", item_id="i005", event="click")]))
            await app.recommender.drain()
    asyncio.run(go())
    assert _stream(url, prefix) == []
