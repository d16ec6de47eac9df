"""The sink's own compaction against a real Redis and real files: once the UTC day (of an injected
clock) changes, the working sink merges the closed day's parts into one file (every row once, in
stream order) and leaves today's alone; off with ``compact=False``; a day that fails is counted,
logged and retried only at the next day change while the sink keeps writing; a standby never
compacts; a stop does not wait for a compaction longer than its bound."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis

from service.eventlog import compact
from service.eventlog.schema import LogRecord, day, encode, read_log
from service.eventlog.sink import Sink
from service.state.keys import log_stream_key
from tests.fixtures.redis_server import delete_prefix, shared_url, unique_prefix

DAY = 86400
T0 = 1_764_700_000  # 2025-12-02 UTC
D1, D2 = day(T0), day(T0 + DAY)
FAST = {"batch_max": 4, "flush_seconds": 0.01, "block_ms": 20}


@pytest.fixture
def redis_url():  # type: ignore[no-untyped-def]
    url, prefix = shared_url(), unique_prefix()
    yield url, prefix
    delete_prefix(url, prefix)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def append(url: str, prefix: str, n: int, start: int = 0) -> None:
    """Records e<start>.. alternating between D1 (even k) and D2 (odd k), in stream order."""
    client = redis.Redis.from_url(url, decode_responses=True)
    for k in range(start, start + n):
        rec = LogRecord(f"e{k}", f"m{k % 7}", f"i{k % 11}", "click", T0 + (k % 2) * DAY)
        client.xadd(log_stream_key(prefix), {"r": encode(rec)})
    client.close()


def parts(log: Path, date: str) -> list[Path]:
    return sorted((log / f"date={date}").glob("part-*.parquet"))


def snapshot(log: Path, date: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in parts(log, date)}


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def written(s: Sink) -> float:
    return s.metrics.written._value.get()


def failures(s: Sink) -> float:
    return s.metrics.compact_failures._value.get()


async def running(s: Sink, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``s`` while ``body`` runs, then stop it gracefully."""
    stop = asyncio.Event()
    task = asyncio.create_task(s.run(stop))
    try:
        await body()
    finally:
        stop.set()
        await task


def test_the_closed_day_is_compacted_after_the_day_changes_and_today_is_left_alone(
        tmp_path: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    append(url, prefix, 24)
    clock = Clock(T0)
    s = Sink(url, tmp_path, prefix=prefix, clock=clock, **FAST)  # type: ignore[arg-type]

    async def body() -> None:
        await until(lambda: written(s) == 24)
        await asyncio.sleep(0.1)
        assert len(parts(tmp_path, D1)) > 1, "D1 is today: not compacted"
        today.update(snapshot(tmp_path, D2))
        clock.now = T0 + DAY  # midnight passed: D1 is closed, D2 is today
        await until(lambda: len(parts(tmp_path, D1)) == 1)

    today: dict[str, int] = {}
    asyncio.run(running(s, body))  # the stop waits for the pass to end
    assert snapshot(tmp_path, D2) == today and len(today) > 1, "today's parts are never touched"
    (merged,) = parts(tmp_path, D1)
    assert pq.read_table(merged).column("event_id").to_pylist() == [f"e{k}" for k in range(0, 24, 2)]
    assert sorted(read_log(tmp_path, columns=["event_id"]).column("event_id").to_pylist()) == sorted(
        f"e{k}" for k in range(24))
    assert failures(s) == 0


def test_no_compact_leaves_the_parts_and_a_compacting_sink_compacts_once_it_starts(
        tmp_path: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    append(url, prefix, 16)
    clock = Clock(T0)
    off = Sink(url, tmp_path, prefix=prefix, clock=clock, compact=False, **FAST)  # type: ignore[arg-type]

    async def day_changes() -> None:
        await until(lambda: written(off) == 16)
        clock.now = T0 + DAY
        append(url, prefix, 1, start=17)  # a D2 record, committed in a later loop turn (new day seen)
        await until(lambda: written(off) == 17)

    asyncio.run(running(off, day_changes))  # a pass started would be awaited by the stop
    before = snapshot(tmp_path, D1)
    assert len(before) > 1

    on = Sink(url, tmp_path, prefix=prefix, clock=clock, **FAST)  # type: ignore[arg-type]

    async def starts() -> None:  # no day change while it runs: the pass at start does it
        await until(lambda: len(parts(tmp_path, D1)) == 1)

    asyncio.run(running(on, starts))
    (merged,) = parts(tmp_path, D1)
    assert pq.read_table(merged).column("event_id").to_pylist() == [f"e{k}" for k in range(0, 16, 2)]


def test_a_failed_day_is_counted_logged_and_retried_at_the_next_day_change_while_the_sink_writes(
        tmp_path: Path, redis_url: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    url, prefix = redis_url
    append(url, prefix, 16)
    clock = Clock(T0)
    s = Sink(url, tmp_path, prefix=prefix, clock=clock, **FAST)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="service.eventlog")

    async def body() -> None:
        await until(lambda: written(s) == 16)
        broken = parts(tmp_path, D1)[1]
        broken.write_bytes(b"not parquet")
        clock.now = T0 + DAY
        await until(lambda: failures(s) == 1)
        append(url, prefix, 8, start=16)
        await until(lambda: written(s) == 24)  # the sink keeps writing
        await asyncio.sleep(0.3)
        assert failures(s) == 1, "not retried before the next day change"
        clock.now = T0 + 2 * DAY
        await until(lambda: failures(s) == 2)
        with open(tmp_path / compact.LOCK, "a") as held:  # a `mallrec log compact` running
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            clock.now = T0 + 3 * DAY
            await until(lambda: failures(s) == 3)
        append(url, prefix, 4, start=24)
        await until(lambda: written(s) == 28)

    asyncio.run(running(s, body))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    lines = [r for r in errors if getattr(r, "date", None) == D1]
    assert len(lines) == 2 and "cannot read" in lines[0].error  # type: ignore[attr-defined]
    assert "another compaction" in errors[-1].error  # type: ignore[attr-defined]
    assert len(parts(tmp_path, D1)) > 1, "a day that fails keeps its files"


def test_a_standby_does_not_compact_until_it_is_the_sink(tmp_path: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    append(url, prefix, 16)
    clock = Clock(T0 + DAY)  # D1 is closed from the start
    holder = Sink(url, tmp_path, prefix=prefix, clock=clock, compact=False, **FAST)  # type: ignore[arg-type]
    standby = Sink(url, tmp_path, prefix=prefix, clock=clock, lock_ttl=0.3, **FAST)  # type: ignore[arg-type]

    async def go() -> None:
        stop_holder, stop_standby = asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(holder.run(stop_holder))
        await until(lambda: written(holder) == 16)
        before = snapshot(tmp_path, D1)
        t2 = asyncio.create_task(standby.run(stop_standby))
        await asyncio.sleep(0.4)  # a few turns of its loop as a standby
        assert holder.holding and not standby.holding
        assert snapshot(tmp_path, D1) == before and len(before) > 1
        stop_holder.set()
        await t1
        await until(lambda: len(parts(tmp_path, D1)) == 1)  # the sink now: it compacts
        assert standby.holding
        stop_standby.set()
        await t2

    asyncio.run(go())


def test_stop_leaves_a_long_compaction_behind_after_its_bound(
        tmp_path: Path, redis_url: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    url, prefix = redis_url
    append(url, prefix, 8)
    clock = Clock(T0)
    s = Sink(url, tmp_path, prefix=prefix, clock=clock, compact_stop_wait=0.3, **FAST)  # type: ignore[arg-type]
    entered, release = threading.Event(), threading.Event()
    real = compact.compact_day

    def slow_day(*a: object, **kw: object) -> compact.DayResult:
        entered.set()
        release.wait(10)
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(compact, "compact_day", slow_day)

    async def body() -> None:
        await until(lambda: written(s) == 8)
        clock.now = T0 + DAY
        await until(entered.is_set)

    started = time.monotonic()
    try:
        asyncio.run(running(s, body))
        assert time.monotonic() - started < 5
        assert any("left behind" in r.getMessage() for r in caplog.records)
    finally:
        release.set()  # the left-behind thread finishes its day and lets the compaction lock go

    async def lock_free() -> None:
        await until(lambda: len(parts(tmp_path, D1)) == 1)

    asyncio.run(lock_free())


@pytest.mark.parametrize(("args", "env", "on"), [([], {}, True), (["--no-compact"], {}, False),
                                                  ([], {"MALLREC_SINK_COMPACT": "false"}, False)])
def test_the_switch_reaches_the_sink(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str],
                                     env: dict[str, str], on: bool) -> None:
    from typer.testing import CliRunner

    from service.cli import app
    from service.eventlog import sink
    from service.settings import Settings

    seen: dict[str, object] = {}

    class Recorded:
        def __init__(self, *a: object, **kw: object) -> None:
            seen.update(kw)

        async def run(self, stop: asyncio.Event) -> None:
            return None

    monkeypatch.setattr(sink, "Sink", Recorded)
    result = CliRunner().invoke(app, ["sink", "--log", str(tmp_path), "--redis-url", "redis://x", *args],
                                env=env)
    assert result.exit_code == 0, result.output
    assert seen["compact"] is on
    # serve --log reads the same environment variable
    assert Settings.load(env=env).sink_compact is ("MALLREC_SINK_COMPACT" not in env)
