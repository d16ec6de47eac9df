"""The servicer over a real gRPC server with fakes: statuses, BadRequest details, health, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.client import bad_fields
from service.errors import MallrecError
from service.state.memory import InMemoryStateStore
from tests.fixtures.server import serving
from tests.fixtures.service import NOW
from tests.fixtures.tiny_bundle import publish_tiny


async def status_of(call) -> tuple[grpc.StatusCode, list[str]]:  # type: ignore[no-untyped-def]
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code(), bad_fields(e)
    raise AssertionError("expected an error")


def test_calls_statuses_and_metrics(tmp_path: Path) -> None:
    publish_tiny(tmp_path, NOW)

    async def go() -> None:
        async with serving(tmp_path, state=InMemoryStateStore(), clock=lambda: NOW) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            resp = await stub.Recommend(pb.RecommendRequest(member_id="m001", slot="delivery", count=4,
                                                            context=pb.Context(order_item_ids=["i012"])))
            assert len(resp.items) == 4 and resp.request_id and resp.slot == "delivery"
            assert all(i.reasons and i.reasons[0].kind == "source" for i in resp.items)
            assert "i012" not in [i.item_id for i in resp.items]

            bad_slot = pb.RecommendRequest(member_id="m1", slot="x", count=3)
            assert await status_of(stub.Recommend(bad_slot)) == (grpc.StatusCode.INVALID_ARGUMENT, ["slot"])
            assert await status_of(stub.Recommend(pb.RecommendRequest(member_id="m1", slot="check_in"))) == \
                (grpc.StatusCode.INVALID_ARGUMENT, ["count"])
            assert await status_of(stub.RecommendPage(pb.RecommendPageRequest(
                member_id="m1", slots=[pb.SlotRequest(slot="check_in", count=2),
                                       pb.SlotRequest(slot="delivery", count=500)]))) == \
                (grpc.StatusCode.INVALID_ARGUMENT, ["slots[1].count"])
            assert await status_of(stub.TrackEvents(pb.TrackEventsRequest(events=[
                pb.Event(member_id="m1", item_id="i1", event="like")]))) == \
                (grpc.StatusCode.INVALID_ARGUMENT, ["events[0].event"])
            assert (await status_of(stub.SimilarItems(pb.SimilarItemsRequest(item_id="zz", count=3))))[0] == \
                grpc.StatusCode.NOT_FOUND
            tracked = await stub.TrackEvents(pb.TrackEventsRequest(events=[
                pb.Event(member_id="m1", item_id="i3", event="view"),
                pb.Event(member_id="m1", item_id="i3", event="impression", slot="check_in")]))
            assert tracked.accepted == 2

            sample = app.metrics.registry.get_sample_value
            ok = {"method": "Recommend", "slot": "delivery", "code": "OK"}
            assert sample("mallrec_requests_total", ok) == 1
            assert sample("mallrec_requests_total",
                          {"method": "Recommend", "slot": "unknown", "code": "INVALID_ARGUMENT"}) == 1
            assert sample("mallrec_request_seconds_count", {"method": "Recommend", "slot": "delivery"}) == 1
            created = str(app.models.current.bundle.manifest["created_at"])
            assert sample("mallrec_model_info", {"version": app.model_version, "created_at": created}) == 1

    asyncio.run(go())


def test_no_model_means_unavailable_and_not_serving(tmp_path: Path) -> None:
    async def go() -> None:
        async with serving(tmp_path, state=InMemoryStateStore()) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            code, _ = await status_of(pb_grpc.RecommenderStub(ch).Recommend(
                pb.RecommendRequest(member_id="m1", slot="check_in", count=3)))
            assert code == grpc.StatusCode.UNAVAILABLE
            stub = health_pb2_grpc.HealthStub(ch)
            ready = await stub.Check(health_pb2.HealthCheckRequest(service="mallrec.v1.Recommender"))
            assert ready.status == health_pb2.HealthCheckResponse.NOT_SERVING  # cannot recommend yet
            alive = await stub.Check(health_pb2.HealthCheckRequest())
            assert alive.status == health_pb2.HealthCheckResponse.SERVING  # but the process is up

    asyncio.run(go())


def test_deadline_is_kept_when_the_state_store_is_slow(tmp_path: Path) -> None:
    publish_tiny(tmp_path, NOW)

    class Slow(InMemoryStateStore):
        async def read(self, member_id: str, now: float):  # type: ignore[no-untyped-def]
            await asyncio.sleep(2)
            return await super().read(member_id, now)

    async def go() -> None:
        async with serving(tmp_path, state=Slow(), clock=lambda: NOW) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            resp = await pb_grpc.RecommenderStub(ch).Recommend(
                pb.RecommendRequest(member_id="m001", slot="check_in", count=3), timeout=0.3)
            assert resp.degraded and len(resp.items) == 3
            assert app.metrics.registry.get_sample_value("mallrec_degraded_responses_total",
                                                         {"reason": "state_store"}) == 1

    asyncio.run(go())


def test_graceful_stop_turns_health_not_serving_first(tmp_path: Path) -> None:
    publish_tiny(tmp_path, NOW)

    async def go() -> None:
        async with serving(tmp_path, state=InMemoryStateStore()) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            req = health_pb2.HealthCheckRequest(service="mallrec.v1.Recommender")
            assert (await health.Check(req)).status == health_pb2.HealthCheckResponse.SERVING
            await app.health.enter_graceful_shutdown()
            assert (await health.Check(req)).status == health_pb2.HealthCheckResponse.NOT_SERVING

    asyncio.run(go())


def test_a_second_server_on_the_same_port_fails_instead_of_sharing_traffic(tmp_path: Path) -> None:
    async def go() -> None:
        async with serving(tmp_path, state=InMemoryStateStore()) as app:
            with pytest.raises(MallrecError, match="cannot listen"):
                async with serving(tmp_path, state=InMemoryStateStore(), port=app.port):
                    pass

    asyncio.run(go())


def test_metrics_are_scraped_over_http(tmp_path: Path) -> None:
    import urllib.request

    from tests.fixtures.redis_server import free_port

    publish_tiny(tmp_path, NOW)
    port = free_port()

    async def go() -> str:
        async with serving(tmp_path, state=InMemoryStateStore(), metrics_port=port) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            await pb_grpc.RecommenderStub(ch).Recommend(pb.RecommendRequest(member_id="m1", slot="check_in",
                                                                            count=2))
            url = f"http://127.0.0.1:{port}/metrics"
            return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())

    text = asyncio.run(go())
    assert 'mallrec_requests_total{code="OK",method="Recommend",slot="check_in"} 1.0' in text
    assert "mallrec_request_seconds_bucket" in text and "mallrec_model_info" in text
