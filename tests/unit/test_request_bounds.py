"""Every request bound, through the real gRPC server: INVALID_ARGUMENT naming the field (and the
event's index), a bad value quoted short, and nothing of a rejected batch applied."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.client import bad_fields
from service.state.memory import InMemoryStateStore
from service.validation import QUOTE_CHARS
from tests.fixtures.server import serving
from tests.fixtures.tiny_bundle import publish_tiny

NOW = int(time.time())


def ev(**kw: object) -> pb.Event:
    return pb.Event(**{"member_id": "m001", "item_id": "i003", "event": "click", **kw})  # type: ignore[arg-type]


BAD_BATCHES = [
    ("too many events", [ev(event_id=f"e{k}") for k in range(1001)], "events"),
    ("long member id", [ev(), ev(member_id="m" * 257)], "events[1].member_id"),
    ("long item id", [ev(item_id="i" * 10_000)], "events[0].item_id"),
    ("separator in an id", [ev(item_id="i\x1f003")], "events[0].item_id"),
    ("control character in the slot", [ev(slot="check\nin")], "events[0].slot"),
    ("long request id", [ev(request_id="r" * 300)], "events[0].request_id"),
    ("long event id", [ev(event_id="e" * 300)], "events[0].event_id"),
    ("ts at the end of time", [ev(ts=2**63 - 1)], "events[0].ts"),
    ("ts before 2000", [ev(ts=946_684_799)], "events[0].ts"),
    ("ts two days ahead", [ev(ts=NOW + 2 * 86400)], "events[0].ts"),
    ("negative quantity", [ev(quantity=-1)], "events[0].quantity"),
    ("unknown event", [ev(event="like")], "events[0].event"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    publish_tiny(path)
    return path


async def _status(call) -> tuple[grpc.StatusCode, list[str], str]:  # type: ignore[no-untyped-def]
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code(), bad_fields(e), e.details() or ""
    raise AssertionError("the call was accepted")


@pytest.mark.parametrize(("case", "events", "field"), BAD_BATCHES, ids=[c[0] for c in BAD_BATCHES])
def test_a_bad_batch_is_refused_whole_naming_the_field(models: Path, case: str, events: list[pb.Event],
                                                        field: str) -> None:
    store = InMemoryStateStore()

    async def go() -> None:
        async with serving(models, state=store) as app, grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            code, fields, message = await _status(stub.TrackEvents(pb.TrackEventsRequest(events=events)))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, message
            assert fields == [field]
            assert len(message) < QUOTE_CHARS + 250, "a bad value is quoted short"
    asyncio.run(go())
    assert not store.events and not store.impressions and not store.log, "nothing of the batch is applied"


def test_the_batch_limit_is_a_setting(models: Path) -> None:
    async def go() -> None:
        async with serving(models, state=InMemoryStateStore(), max_track_events=3) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            three = [ev(event_id=f"e{k}") for k in range(3)]
            ok = await stub.TrackEvents(pb.TrackEventsRequest(events=three))
            assert ok.new_events == 3
            code, fields, _ = await _status(stub.TrackEvents(pb.TrackEventsRequest(
                events=[ev(event_id=f"f{k}") for k in range(4)])))
            assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["events"])
    asyncio.run(go())


BAD_ASKS = [
    ("long member id", dict(member_id="m" * 10_000), "member_id"),
    ("member id with a separator", dict(member_id="m\x1f1"), "member_id"),
    ("long slot name", dict(slot="s" * 300), "slot"),
    ("long request id", dict(request_id="r" * 300), "request_id"),
    ("query over 1 KB", dict(context=pb.Context(query="q" * 1025)), "context.query"),
    ("201 order items", dict(context=pb.Context(order_item_ids=[f"i{k:03d}" for k in range(201)])),
     "context.order_item_ids"),
    ("long order item", dict(context=pb.Context(order_item_ids=["i003", "x" * 300])),
     "context.order_item_ids[1]"),
]


@pytest.mark.parametrize(("case", "fields", "field"), BAD_ASKS, ids=[c[0] for c in BAD_ASKS])
def test_recommend_bounds(models: Path, case: str, fields: dict, field: str) -> None:
    async def go() -> None:
        async with serving(models, state=InMemoryStateStore()) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            req = {"member_id": "m001", "slot": "check_in", "count": 5, **fields}
            code, got, message = await _status(stub.Recommend(pb.RecommendRequest(**req)))
            assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, [field]), message
            assert len(message) < QUOTE_CHARS + 250
    asyncio.run(go())


def test_page_and_similar_items_bounds(models: Path) -> None:
    async def go() -> None:
        async with serving(models, state=InMemoryStateStore()) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            slots = [pb.SlotRequest(slot="check_in", count=1)] * 21
            page = pb.RecommendPageRequest(member_id="m001", slots=slots)
            code, got, _ = await _status(stub.RecommendPage(page))
            assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, ["slots"])
            similar = pb.SimilarItemsRequest(item_id="i" * 10_000, count=5)
            code, got, _ = await _status(stub.SimilarItems(similar))
            assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, ["item_id"])
            ok = await stub.RecommendPage(pb.RecommendPageRequest(
                member_id="m001", slots=[pb.SlotRequest(slot="check_in", count=3)],
                context=pb.Context(query="q" * 1024, order_item_ids=["i003"] * 200)))
            assert ok.slots[0].items, "requests at the limits are served"
    asyncio.run(go())
