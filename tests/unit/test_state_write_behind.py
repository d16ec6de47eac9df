"""Served impressions written behind the answer: batched, bounded, flushed on shutdown, and seen
by the next read of the same member before they reach Redis (a frequency cap still holds)."""

from __future__ import annotations

import asyncio

import redis

from service.domain import PageRequest, SlotAsk
from service.recommender import Recommender
from service.reload import Holder
from service.state.keys import impressions_key
from service.state.redis_store import RedisStateStore
from service.state.served_buffer import ServedBuffer
from tests.fixtures.redis_server import delete_prefix, shared_url, unique_prefix
from tests.fixtures.rules import POPULAR, registry
from tests.fixtures.service import NOW, tiny_model

DAY_KEY = "20251009"  # NOW's UTC day (tests.fixtures.service.NOW)


def _hash(url: str, prefix: str, member: str) -> dict[bytes, bytes]:
    client = redis.Redis.from_url(url)
    try:
        return client.hgetall(impressions_key(prefix, member, DAY_KEY))
    finally:
        client.close()


def test_a_cap_holds_across_two_quick_requests_before_any_flush() -> None:
    url, prefix = shared_url(), unique_prefix()
    store = RedisStateStore(url, prefix=prefix, flush_interval=60.0)  # nothing written during the test
    reg = registry(POPULAR + '[[slots.t.rules]]\nname = "once"\ntype = "frequency_cap"\nmax = 1\n')
    rec = Recommender(Holder(tiny_model()), Holder(reg), store, clock=lambda: NOW)

    async def go() -> tuple[list[str], list[str], dict[bytes, bytes]]:
        pages = []
        for _ in range(2):
            page = await rec.recommend(PageRequest("m002", (SlotAsk("t", 4),)), single=True)
            pages.append([i.item_id for i in page.slots[0].items])
        unwritten = _hash(url, prefix, "m002")
        await rec.drain()  # the shutdown path writes the queue
        await store.close()
        return pages[0], pages[1], unwritten

    try:
        first, second, unwritten = asyncio.run(go())
        assert unwritten == {}, "the writes were still queued when the second request read"
        assert len(first) == 4 and second and not set(first) & set(second)
        written = _hash(url, prefix, "m002")
        assert {k.decode(): int(v) for k, v in written.items()} == {f"s:{i}": 1 for i in first + second}
    finally:
        delete_prefix(url, prefix)


def test_many_pages_go_in_one_write_and_reads_do_not_count_them_twice() -> None:
    url, prefix = shared_url(), unique_prefix()
    store = RedisStateStore(url, prefix=prefix, flush_interval=0.01, flush_at=1000)
    calls = []
    script = store._count_served

    async def counting(**kw):  # type: ignore[no-untyped-def]
        calls.append(kw)
        return await script(**kw)

    store._count_served = counting  # type: ignore[assignment]

    async def go() -> None:
        for k in range(20):
            await store.record_served(f"m{k % 5}", ["a", "b"], NOW)
        assert (await store.read("m1", NOW)).impressions == {"a": 4, "b": 4}  # merged, not written yet
        await asyncio.sleep(0.1)
        assert len(calls) == 1 and len(calls[0]["keys"]) == 1 + 5  # the log's stream, then 5 members
        assert not store._served.pending
        assert (await store.read("m1", NOW)).impressions == {"a": 4, "b": 4}  # from Redis only
        await store.close()

    try:
        asyncio.run(go())
    finally:
        delete_prefix(url, prefix)


def test_a_full_queue_flushes_at_once() -> None:
    url, prefix = shared_url(), unique_prefix()
    store = RedisStateStore(url, prefix=prefix, flush_interval=60.0, flush_at=3)

    async def go() -> None:
        for k in range(3):
            await store.record_served("m1", [f"i{k}"], NOW)
        await asyncio.sleep(0.1)
        assert len(_hash(url, prefix, "m1")) == 3
        await store.close()

    try:
        asyncio.run(go())
    finally:
        delete_prefix(url, prefix)


def test_redis_down_keeps_a_bounded_queue_and_counts_what_it_drops() -> None:
    dropped: list[int] = []
    store = RedisStateStore("redis://127.0.0.1:1/0", timeout=0.02, retry_after=5.0, open_after=1,
                            flush_interval=0.001, max_pending=3, on_drop=dropped.append)

    async def go() -> None:
        for _ in range(10):
            await store.record_served("m1", ["a", "b"], NOW)
            await asyncio.sleep(0.05)  # flushes fail, then the breaker keeps them queued
        assert len(store._served) <= 3
        assert sum(dropped) == 2 * 10 - 2 * len(store._served)  # every page is written or counted
        await store.close()

    asyncio.run(go())


def test_the_buffer_drops_the_oldest_pages_and_forgets_their_counts() -> None:
    buf = ServedBuffer(max_pages=2)
    assert buf.add("m1", "d", ("a", "b")) == 0
    assert buf.add("m2", "d", ("a",)) == 0
    assert buf.add("m1", "d", ("b",)) == 2  # m1's first page made room
    assert buf.counts("m1", "d") == {"b": 1} and buf.counts("m2", "d") == {"a": 1}
    batch = buf.take(10)
    assert len(buf) == 0 and buf.counts("m1", "d") == {"b": 1}  # being written: still pending
    buf.done(batch)
    assert buf.pending == {}


def test_pages_queued_under_one_event_loop_are_written_under_the_next() -> None:
    url, prefix = shared_url(), unique_prefix()
    store = RedisStateStore(url, prefix=prefix, flush_interval=60.0)
    try:
        asyncio.run(store.record_served("m1", ["a"], NOW))  # its timer dies with that loop
        asyncio.run(store.close())
        assert {k.decode(): int(v) for k, v in _hash(url, prefix, "m1").items()} == {"s:a": 1}
    finally:
        delete_prefix(url, prefix)


def test_a_flush_answered_while_a_read_waits_does_not_hide_its_pages() -> None:
    """Redis runs the read before the flush's write, but the flush's reply is handled first (it
    leaves the buffer): the read must still count the page, from what it took before asking."""
    url, prefix = shared_url(), unique_prefix()
    store = RedisStateStore(url, prefix=prefix, flush_interval=60.0)
    real_pipeline = store.client.pipeline

    def pipeline_then_flush(*args, **kwargs):  # type: ignore[no-untyped-def]
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        async def execute(*a, **kw):  # type: ignore[no-untyped-def]
            answer = await real_execute(*a, **kw)  # Redis has answered the read ...
            await store.flush()  # ... and now the flush is written and answered
            return answer

        pipe.execute = execute
        return pipe

    async def go():  # type: ignore[no-untyped-def]
        await store.record_served("m1", ["a", "b"], NOW)
        store.client.pipeline = pipeline_then_flush
        state = await store.read("m1", NOW)
        store.client.pipeline = real_pipeline
        after = await store.read("m1", NOW)
        await store.close()
        return state, after

    try:
        state, after = asyncio.run(go())
        assert state.impressions == {"a": 1, "b": 1}, "the page was in neither Redis nor the buffer"
        assert after.impressions == {"a": 1, "b": 1}  # written once
    finally:
        delete_prefix(url, prefix)
