"""The event-log sink against a real Redis: every record reaches Parquet exactly once, whatever point
a crash interrupts a batch at; one sink at a time; the stream stays bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from service.eventlog import files, sink
from service.eventlog.schema import LogRecord, encode, log_files, read_log
from service.eventlog.sink import Sink
from service.state.keys import log_stream_key
from tests.fixtures.redis_server import delete_prefix, shared_url, unique_prefix

DAY = 86400
T0 = 1_764_700_000  # a known UTC day; T0 + DAY is the next one


@pytest.fixture
def redis_url():  # type: ignore[no-untyped-def]
    url, prefix = shared_url(), unique_prefix()
    yield url, prefix
    delete_prefix(url, prefix)


def append(url: str, prefix: str, n: int, start: int = 0, maxlen: int | None = None) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    ids = []
    for k in range(start, start + n):
        rec = LogRecord(f"e{k}", f"m{k % 7}", f"i{k % 11}", "click", T0 + (k % 2) * DAY)
        ids.append(client.xadd(log_stream_key(prefix), {"r": encode(rec)}, maxlen=maxlen, approximate=False))
    client.close()
    return ids


async def run_until_written(s: Sink, log_dir: Path, n: int, timeout: float = 10.0) -> None:
    """Run the sink until ``n`` records are in files, then stop it gracefully."""
    stop = asyncio.Event()
    task = asyncio.create_task(s.run(stop))
    async with asyncio.timeout(timeout):
        while read_log(log_dir, columns=["event_id"]).num_rows < n:
            await asyncio.sleep(0.02)
    stop.set()
    await task


def event_ids(log_dir: Path) -> list[str]:
    return sorted(read_log(log_dir, columns=["event_id"]).column("event_id").to_pylist())


def test_records_land_in_day_partitions_once(tmp_path: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    append(url, prefix, 50)
    s = Sink(url, tmp_path, prefix=prefix, batch_max=20, flush_seconds=0.05, block_ms=20)
    asyncio.run(run_until_written(s, tmp_path, 50))
    assert event_ids(tmp_path) == sorted(f"e{k}" for k in range(50))
    assert {p.parent.name for p in log_files(tmp_path)} == {"date=2025-12-02", "date=2025-12-03"}
    assert s.metrics.written._value.get() == 50
    assert files.read_checkpoint(tmp_path) != files.START


@pytest.mark.parametrize("crash_at", ["files written, no checkpoint", "checkpoint written, no ack"])
def test_a_crash_mid_batch_loses_nothing_and_writes_nothing_twice(
        tmp_path: Path, redis_url: tuple[str, str], monkeypatch: pytest.MonkeyPatch, crash_at: str) -> None:
    url, prefix = redis_url
    append(url, prefix, 30)

    class Crash(BaseException):
        """Like a kill: nothing after it runs (not even the sink's error handling)."""

    def crash(*a: object, **kw: object) -> None:
        raise Crash

    s = Sink(url, tmp_path, prefix=prefix, batch_max=30, flush_seconds=0.01, block_ms=20)
    if crash_at == "files written, no checkpoint":
        monkeypatch.setattr(files, "write_checkpoint", crash)
    else:
        monkeypatch.setattr(s.client, "xack", crash)
    with pytest.raises(Crash):
        asyncio.run(s.run(asyncio.Event()))
    assert len(log_files(tmp_path)) == 2, "the batch's files were renamed into place before the crash"
    monkeypatch.undo()
    redis.Redis.from_url(url).delete(f"{prefix}log:sink")  # the killed sink's lock would expire by itself
    append(url, prefix, 10, start=30)
    # other batch boundaries: the interrupted batch's files must go, not merely be overwritten
    again = Sink(url, tmp_path, prefix=prefix, batch_max=7, flush_seconds=0.01, block_ms=20)
    asyncio.run(run_until_written(again, tmp_path, 40))
    assert event_ids(tmp_path) == sorted(f"e{k}" for k in range(40))
    client = redis.Redis.from_url(url, decode_responses=True)
    assert client.xpending(log_stream_key(prefix), sink.GROUP)["pending"] == 0


def test_a_second_sink_stands_by_until_the_first_lets_go(tmp_path: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    append(url, prefix, 5)

    async def go() -> None:
        first = Sink(url, tmp_path, prefix=prefix, flush_seconds=0.01, block_ms=20)
        second = Sink(url, tmp_path, prefix=prefix, flush_seconds=0.01, block_ms=20, lock_ttl=0.3)
        stop1, stop2 = asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(first.run(stop1))
        await asyncio.sleep(0.2)
        t2 = asyncio.create_task(second.run(stop2))
        await asyncio.sleep(0.3)
        assert first.holding and not second.holding
        stop1.set()
        await t1
        append(url, prefix, 5, start=5)
        async with asyncio.timeout(5):
            while read_log(tmp_path, columns=["event_id"]).num_rows < 10:
                await asyncio.sleep(0.02)
        assert second.holding
        stop2.set()
        await t2

    asyncio.run(go())
    assert event_ids(tmp_path) == sorted(f"e{k}" for k in range(10))


def test_the_stream_is_capped_while_no_sink_reads_it(redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    append(url, prefix, 300, maxlen=100)
    client = redis.Redis.from_url(url)
    assert client.xlen(log_stream_key(prefix)) == 100
    client.close()


def test_remove_uncommitted_keeps_what_the_checkpoint_covers(tmp_path: Path) -> None:
    recs = [LogRecord("a", "m", "i", "view", T0), LogRecord("b", "m", "i", "view", T0 + DAY)]
    kept = files.write_batch(tmp_path, recs[:1], "100-0", "100-5")
    files.write_checkpoint(tmp_path, "100-5")
    interrupted = files.write_batch(tmp_path, recs, "101-0", "101-9")
    (kept[0].parent / ".part-x.parquet.tmp").write_bytes(b"half")
    removed = files.remove_uncommitted(tmp_path, files.read_checkpoint(tmp_path))
    assert sorted(removed) == sorted([*interrupted, kept[0].parent / ".part-x.parquet.tmp"])
    assert log_files(tmp_path) == kept
    assert files.sid("1700000000000-12") > files.sid("1700000000000-9")


def test_remove_uncommitted_leaves_what_the_sink_did_not_write(tmp_path: Path) -> None:
    """A compaction's temporary output and files without a stream-id range are not the sink's."""
    kept = files.write_batch(tmp_path, [LogRecord("a", "m", "i", "view", T0)], "100-0", "100-5")
    files.write_checkpoint(tmp_path, "100-5")
    folder = kept[0].parent
    others = [folder / ".compact-part-100-0_100-5.parquet.tmp", folder / "part-notes.parquet",
              folder / "part-x_y.parquet", folder / "README.txt"]
    for f in others:
        f.write_bytes(b"not the sink's")
    assert files.remove_uncommitted(tmp_path, "100-5") == []
    assert all(f.exists() for f in [*kept, *others])


def test_records_the_cap_dropped_before_a_sink_read_them_are_counted_lost(
        tmp_path: Path, redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    append(url, prefix, 10)
    first = Sink(url, tmp_path, prefix=prefix, flush_seconds=0.01, block_ms=20)
    asyncio.run(run_until_written(first, tmp_path, 10))
    append(url, prefix, 300, start=10, maxlen=100)  # no sink running: 200 of them are trimmed unread
    again = Sink(url, tmp_path, prefix=prefix, flush_seconds=0.01, block_ms=20)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(again.run(stop))
        async with asyncio.timeout(10):
            while read_log(tmp_path, columns=["event_id"]).num_rows < 110:
                await asyncio.sleep(0.02)
        await asyncio.sleep(1.1)  # the next look at the stream sees nothing left to read
        await again._step(block=False)
        stop.set()
        await task

    asyncio.run(go())
    assert again.metrics.lost._value.get() == 200 and again.metrics.overruns._value.get() == 1
    assert again.metrics.backlog._value.get() == 0, "the gap does not stay in the backlog"
    assert event_ids(tmp_path) == sorted([f"e{k}" for k in range(10)] + [f"e{k}" for k in range(210, 310)])


def test_decode_table_matches_the_record_decoder_and_skips_what_is_not_a_record() -> None:
    from service.eventlog.schema import decode, decode_table, to_table

    recs = [encode(LogRecord(f"e{k}", "m", "i", "served", T0 + k, 1, "s", k, "r", "als", "v", "rv", "x", "a",
                             ("Pin", "Boost") if k % 2 else ())) for k in range(5)]
    table, bad = decode_table([*recs, "not a record", recs[0].replace("\x1f" + str(T0), "\x1fnan")])
    assert bad == 2 and table.equals(to_table([decode(r) for r in recs]))
