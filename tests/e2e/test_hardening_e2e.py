"""What probing the running service found, each against the real server: health per service name
with Redis down, undecodable bodies, load shedding, process metrics, binding, TLS and rediss://."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.app import EVENT_INTAKE, SERVICE_NAME
from service.domain import Event, OnlineState
from service.metrics import Metrics
from service.settings import Settings, SettingsError
from service.state.memory import InMemoryStateStore
from service.state.redis_store import RedisStateStore
from tests.fixtures.redis_server import RedisProcess, binary, free_port
from tests.fixtures.server import serving
from tests.fixtures.tiny_bundle import publish_tiny
from tests.fixtures.tls import make_certs

pytestmark = pytest.mark.e2e
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    publish_tiny(path)
    return path


async def _health(ch: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service))
    return reply.status


def test_redis_down_keeps_recommending_but_event_intake_is_not_serving(
        models: Path, caplog: pytest.LogCaptureFixture) -> None:
    redis_server = RedisProcess()
    caplog.set_level(logging.WARNING)

    async def go() -> None:
        async with serving(models, redis_url=redis_server.url, reload_interval=0.1) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            assert await _health(ch, SERVICE_NAME) == SERVING
            assert await _health(ch, EVENT_INTAKE) == NOT_SERVING
            assert app.metrics.registry.get_sample_value("mallrec_redis_up") == 0
            assert any("unreachable" in r.getMessage() for r in caplog.records), "a warning at start"
            redis_server.start()
            try:
                async with asyncio.timeout(5):
                    while await _health(ch, EVENT_INTAKE) != SERVING:
                        await asyncio.sleep(0.05)
                assert app.metrics.registry.get_sample_value("mallrec_redis_up") == 1
                redis_server.kill()
                async with asyncio.timeout(5):
                    while await _health(ch, EVENT_INTAKE) != NOT_SERVING:
                        await asyncio.sleep(0.05)
                assert await _health(ch, SERVICE_NAME) == SERVING
            finally:
                redis_server.kill()
    asyncio.run(go())


def test_an_undecodable_body_is_invalid_argument_counted_and_logged_without_a_traceback(
        models: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def go() -> None:
        async with serving(models, state=InMemoryStateStore()) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            raw = ch.unary_unary("/mallrec.v1.Recommender/Recommend")  # no serializer: bytes as they are
            for _ in range(20):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await raw(b"\xff\xff\xff\xff garbage")
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "mallrec.v1.RecommendRequest" in (err.value.details() or "")
            assert app.metrics.registry.get_sample_value("mallrec_undecodable_requests_total",
                                                         {"method": "Recommend"}) == 20
            ok = await pb_grpc.RecommenderStub(ch).Recommend(
                pb.RecommendRequest(member_id="m001", slot="check_in", count=3))
            assert ok.items
    asyncio.run(go())
    lines = [r for r in caplog.records if "not a valid message" in r.getMessage()]
    assert len(lines) == 1, "rate-limited: one line for twenty"
    assert not any(r.exc_info for r in caplog.records), "no traceback"


class SlowStore(InMemoryStateStore):
    async def read(self, member_id: str, now: float, days: int = 1) -> OnlineState:
        await asyncio.sleep(0.5)
        return await super().read(member_id, now, days)


def test_requests_past_the_in_flight_bound_are_shed_at_once(models: Path) -> None:
    async def go() -> None:
        async with serving(models, state=SlowStore(), max_in_flight=2) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            req = pb.RecommendRequest(member_id="m001", slot="check_in", count=3)
            async def ask() -> pb.RecommendResponse:
                return await stub.Recommend(req)

            slow = [asyncio.create_task(ask()) for _ in range(2)]
            await asyncio.sleep(0.1)
            t0 = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Recommend(req)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.perf_counter() - t0 < 0.3, "refused at once, not after the slow ones"
            assert all(r.items for r in await asyncio.gather(*slow))
            assert app.metrics.registry.get_sample_value("mallrec_shed_requests_total",
                                                         {"reason": "in_flight"}) == 1
    asyncio.run(go())


def test_a_request_that_starts_past_its_deadline_is_shed(models: Path) -> None:
    from service.grpc_api import RecommenderServicer

    class Ctx:
        def time_remaining(self) -> float:
            return 0.001

        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise RuntimeError(code)

    servicer = RecommenderServicer(None, Metrics())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError) as err:
        asyncio.run(servicer._serve("Recommend", "check_in", Ctx(), lambda: None))  # type: ignore[arg-type]
    assert err.value.args[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    shed = servicer.metrics.registry.get_sample_value("mallrec_shed_requests_total", {"reason": "deadline"})
    assert shed == 1


def test_binding_defaults_to_this_machine_and_metrics_follow_the_host(models: Path) -> None:
    assert Settings.load({}).host == "127.0.0.1"
    port = free_port()

    async def go() -> None:
        async with serving(models, state=InMemoryStateStore(), metrics_port=port) as app:
            assert app.metrics._http.server_address[0] == "127.0.0.1"
            body = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
            for name in ("process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total",
                         "mallrec_redis_up"):
                assert name in body
    asyncio.run(go())


def test_grpc_over_tls_and_mutual_tls(models: Path, tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    ca = certs.ca.read_bytes()
    req = pb.RecommendRequest(member_id="m001", slot="check_in", count=3)
    options = (("grpc.ssl_target_name_override", "localhost"),)

    async def go() -> None:
        async with serving(models, state=InMemoryStateStore(), tls_cert=certs.server_cert,
                           tls_key=certs.server_key) as app:
            creds = grpc.ssl_channel_credentials(root_certificates=ca)
            async with grpc.aio.secure_channel(app.target, creds, options) as ch:
                assert (await pb_grpc.RecommenderStub(ch).Recommend(req, timeout=5)).items
            async with grpc.aio.insecure_channel(app.target) as ch:
                with pytest.raises(grpc.aio.AioRpcError):
                    await pb_grpc.RecommenderStub(ch).Recommend(req, timeout=2)
        async with serving(models, state=InMemoryStateStore(), tls_cert=certs.server_cert,
                           tls_key=certs.server_key, tls_client_ca=certs.ca) as app:
            anonymous = grpc.ssl_channel_credentials(root_certificates=ca)
            async with grpc.aio.secure_channel(app.target, anonymous, options) as ch:
                with pytest.raises(grpc.aio.AioRpcError):
                    await pb_grpc.RecommenderStub(ch).Recommend(req, timeout=2)
            client = grpc.ssl_channel_credentials(root_certificates=ca,
                                                  private_key=certs.client_key.read_bytes(),
                                                  certificate_chain=certs.client_cert.read_bytes())
            async with grpc.aio.secure_channel(app.target, client, options) as ch:
                assert (await pb_grpc.RecommenderStub(ch).Recommend(req, timeout=5)).items
    asyncio.run(go())


def test_tls_settings_are_checked_together() -> None:
    with pytest.raises(SettingsError, match="tls_cert and tls_key go together"):
        Settings.load({}, tls_cert=Path("a.pem"))


def test_the_state_store_over_rediss(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    port = free_port()
    proc = subprocess.Popen([binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(certs.server_cert),
                             "--tls-key-file", str(certs.server_key),
                             "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no", "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs.ca}"

    async def go() -> None:
        store = RedisStateStore(url, timeout=1.0)
        async with asyncio.timeout(10):
            while not await store.ping():
                await asyncio.sleep(0.05)
        tracked = await store.record_events([Event("m1", "i1", "view", int(time.time()))])
        assert tracked.new == 1
        assert [e.item_id for e in (await store.read("m1", time.time())).recent] == ["i1"]
        await store.close()

    try:
        asyncio.run(go())
    finally:
        proc.kill()
        proc.wait(5)
