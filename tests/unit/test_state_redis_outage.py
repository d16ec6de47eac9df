"""A Redis that dies mid-run: the store answers "unavailable" fast, counts it, and recovers."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.domain import Event, StateUnavailable
from service.state.redis_store import RedisStateStore
from tests.fixtures.redis_server import RedisProcess

NOW = 1_760_000_000


def test_killed_redis_degrades_quickly_and_recovers_by_itself() -> None:
    errors: list[str] = []
    with RedisProcess() as server:
        store = RedisStateStore(server.url, timeout=0.1, retry_after=0.2, on_error=errors.append)

        async def go() -> None:
            await store.record_events([Event("m1", "i1", "view", NOW)])
            assert [e.item_id for e in (await store.read("m1", NOW)).recent] == ["i1"]

            server.kill()
            t0 = time.perf_counter()
            state = await store.read("m1", NOW)
            assert state.degraded and state.recent == []
            assert time.perf_counter() - t0 < 0.5, "a dead Redis must not eat the deadline"
            with pytest.raises(StateUnavailable):
                await store.record_events([Event("m1", "i2", "view", NOW)])
            await store.record_served("m1", ["i1"], NOW)  # best effort: no exception
            assert errors and set(errors) <= {"read", "write", "served"}

            server.start()  # same port, empty (no persistence)
            deadline = time.monotonic() + 5
            while (state := await store.read("m1", NOW)).degraded:
                assert time.monotonic() < deadline, "store did not reconnect"
                await asyncio.sleep(0.05)
            await store.record_events([Event("m1", "i3", "view", NOW)])
            assert [e.item_id for e in (await store.read("m1", NOW)).recent] == ["i3"]
            await store.close()

        asyncio.run(go())


def test_unreachable_url_at_start_is_not_fatal() -> None:
    async def go() -> None:
        store = RedisStateStore("redis://127.0.0.1:1/0", timeout=0.05)
        assert (await store.read("m1", NOW)).degraded
        assert not await store.ping()
        await store.close()

    asyncio.run(go())


def test_a_reply_made_late_by_our_own_stalled_loop_does_not_open_the_breaker() -> None:
    """A model loading beside the requests can stall the event loop past the store's timeout while
    Redis is fine: that call fails, the next ones must not be refused (they were, for a whole second)."""
    with RedisProcess() as server:
        store = RedisStateStore(server.url, timeout=0.02, retry_after=5.0, write_timeout=0.04)

        async def go() -> None:
            await store.record_events([Event("m1", "i1", "view", NOW)])  # connected
            stalled = 0
            for turns in range(12):  # stall the loop at each point of the write until one is hit mid-call
                late = asyncio.create_task(store.record_events([Event("m1", "i2", "view", NOW)]))
                for _ in range(turns):
                    await asyncio.sleep(0)
                time.sleep(0.1)  # a thread holding the GIL: the loop runs nothing, past the 40 ms budget
                failed = (await asyncio.gather(late, return_exceptions=True))[0]
                if isinstance(failed, StateUnavailable):
                    stalled += 1
                    await store.record_events([Event("m1", "j", "view", NOW)])  # not refused
                    assert not (await store.read("m1", NOW)).degraded
            assert stalled, "no stall landed while a reply was awaited"
            await store.close()

        asyncio.run(go())


def test_failures_in_a_row_over_a_timeout_open_the_breaker() -> None:
    async def go() -> None:
        store = RedisStateStore("redis://127.0.0.1:1/0", timeout=0.05, retry_after=5.0, open_after=2)
        assert (await store.read("m1", NOW)).degraded
        assert store._may_try(), "one failure is not an outage"
        assert (await store.read("m1", NOW)).degraded
        assert store._may_try(), "nor two at one moment (a burst of replies our stalled loop made late)"
        await asyncio.sleep(0.06)
        assert (await store.read("m1", NOW)).degraded
        assert not store._may_try(), "failing for longer than a timeout is"
        await store.close()

    asyncio.run(go())
