"""The state store contract, run against the Redis adapter (real Redis) and the in-memory fake."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from service.domain import Event
from service.state.keys import events_key, impressions_key
from service.state.memory import InMemoryStateStore
from service.state.redis_store import RedisStateStore
from tests.fixtures.redis_server import delete_prefix, shared_url, unique_prefix

NOW = 1_760_000_000
DAY_KEY = "20251009"  # NOW's UTC day


@pytest.fixture(params=["redis", "redis-pipeline", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[object]:
    if request.param == "memory":
        yield InMemoryStateStore(max_events=5)
        return
    url, prefix = shared_url(), unique_prefix()
    # Served pages are written at close(), not by the 5 ms timer: a read racing a timer flush may
    # count a page twice by design (the merge is conservative, see redis_store), and exact counts
    # here would flake. Reads before the write are what this checks; the race itself is tested in
    # test_state_write_behind.py (it used to lose the page: 2 of 150 runs of the test below).
    # "redis-pipeline": plain LRANGE / HGETALL reads, as `rules preview --redis-url` reads
    yield RedisStateStore(url, prefix=prefix, max_events=5, events_ttl=3600, impressions_ttl=7200,
                          flush_interval=3600, scripted_read=request.param == "redis")
    delete_prefix(url, prefix)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_recent_events_come_back_newest_first_and_capped(store) -> None:  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        await store.record_events([Event("m1", f"i{k}", "view", NOW + k, "check_in", "r1") for k in range(7)])
        state = await store.read("m1", NOW)
        await store.close()
        return state

    state = run(go())
    assert [e.item_id for e in state.recent] == ["i6", "i5", "i4", "i3", "i2"]
    assert state.recent[0] == Event("m1", "i6", "view", NOW + 6, "check_in", "r1")
    assert not state.degraded


def test_impressions_are_per_day_and_never_double_counted(store) -> None:  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        await store.record_served("m1", ["a", "b"], NOW)
        await store.record_served("m1", ["a"], NOW)
        await store.record_events([Event("m1", "a", "impression", NOW), Event("m1", "c", "impression", NOW)])
        await store.record_served("m1", ["a"], NOW + 86400)  # tomorrow
        state = await store.read("m1", NOW)
        await store.close()
        return state

    state = run(go())
    assert state.impressions == {"a": 2, "b": 1, "c": 1}  # a: served twice, reported once -> 2
    assert state.recent == []  # impressions are not behaviour


def test_an_unknown_member_has_empty_state(store) -> None:  # type: ignore[no-untyped-def]
    state = run(store.read("nobody", NOW))
    assert state.recent == [] and state.impressions == {} and not state.degraded


def test_redis_keys_expire_and_lists_stay_capped() -> None:
    url, prefix = shared_url(), unique_prefix()
    store = RedisStateStore(url, prefix=prefix, max_events=3, events_ttl=3600, impressions_ttl=7200)

    async def go() -> None:
        await store.record_events([Event("m1", f"i{k}", "click", NOW) for k in range(10)])
        await store.record_served("m1", ["a"], NOW)
        await store.close()

    run(go())
    client = redis.Redis.from_url(url)
    try:
        assert client.llen(events_key(prefix, "m1")) == 3
        assert 0 < client.ttl(events_key(prefix, "m1")) <= 3600
        assert 3600 < client.ttl(impressions_key(prefix, "m1", DAY_KEY)) <= 7200
    finally:
        client.close()
        delete_prefix(url, prefix)


def test_earlier_days_impressions_come_back_when_a_window_asks(store) -> None:  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        await store.record_served("m1", ["a"], NOW - 2 * 86400)
        await store.record_served("m1", ["a", "b"], NOW - 86400)
        await store.record_events([Event("m1", "b", "impression", NOW)])
        one, three = await store.read("m1", NOW), await store.read("m1", NOW, 3)
        await store.close()
        return one, three

    one, three = run(go())
    assert one.impressions == {"b": 1} and one.past_impressions == []
    assert three.past_impressions == [{"a": 1, "b": 1}, {"a": 1}]  # yesterday first
    assert three.impressions_over(3) == {"a": 2, "b": 2} and three.impressions_over(1) == {"b": 1}
