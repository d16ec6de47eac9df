"""The sink: reads the event log's Redis Stream with a consumer group and writes Parquet files.

    stream {prefix}log --XREADGROUP--> batch (at most ``batch_max`` entries, or ``flush_seconds`` old)
        --> one file per day, fsynced and renamed (service.eventlog.files) --> checkpoint --> XACK

An entry is acknowledged only after its file and the checkpoint are on disk, so a sink killed at any
point loses nothing and, on restart, writes nothing twice (``files`` says how). One sink works at a
time: it holds a lock in Redis (``{prefix}log:sink``, renewed while it runs); a second one waits as a
standby and takes over when the lock expires. All sinks use one consumer name, so the new holder
finds the old one's pending entries. The log folder must be the same for all of them.

On ``stop`` the sink writes what it holds and what the stream holds up to that moment, then
releases the lock: a process that stops gracefully leaves every record in a file.

The working sink also compacts each closed UTC day's parts into one file after the day ends
(service.eventlog.autocompact; ``compact=False`` leaves that to `mallrec log compact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as redis
from prometheus_client import CollectorRegistry, Counter, Gauge

from service.eventlog import files
from service.eventlog.autocompact import DailyCompaction
from service.eventlog.schema import decode_table
from service.state.keys import log_stream_key, sink_lock_key

log = logging.getLogger(__name__)
GROUP = "sink"
CONSUMER = "sink"
_ERRORS = (redis.RedisError, OSError, TimeoutError)
_RENEW = """if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0"""
_RELEASE = """if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0"""
Entry = tuple[str, dict[str, str] | None]


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.written = Counter("mallrec_eventlog_records_written", "Event-log records written to Parquet",
                               registry=r)
        self.files = Counter("mallrec_eventlog_files_written", "Parquet files the sink wrote", registry=r)
        self.bad = Counter("mallrec_eventlog_bad_records", "Stream entries that were not event-log "
                           "records (skipped)", registry=r)
        self.overruns = Counter("mallrec_eventlog_overruns", "Times the stream's cap was found to have "
                                "dropped records no sink had read", registry=r)
        self.lost = Counter("mallrec_eventlog_lost_records", "Records the stream's cap dropped before a sink "
                            "read them", registry=r)
        self.backlog = Gauge("mallrec_eventlog_backlog", "Stream entries not written to Parquet yet "
                             "(unread + read but not acknowledged)", registry=r)
        self.stream_len = Gauge("mallrec_eventlog_stream_entries", "Entries in the stream (XLEN)",
                                registry=r)
        self.active = Gauge("mallrec_eventlog_sink_active", "1 while this process is the sink (holds "
                            "the lock)", registry=r)
        self.last_write = Gauge("mallrec_eventlog_last_write_timestamp_seconds", "When the sink last "
                                "committed a batch", registry=r)
        self.compact_failures = Counter("mallrec_eventlog_compaction_failures", "Closed days the sink's "
                                        "own compaction failed on (retried after the next UTC day change)",
                                        registry=r)


class Sink:
    def __init__(self, url: str, log_dir: Path, *, prefix: str = "mallrec:", batch_max: int = 10_000,
                 flush_seconds: float = 5.0, block_ms: int = 500, lock_ttl: float = 10.0,
                 metrics: SinkMetrics | None = None, compact: bool = True,
                 compact_stop_wait: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.log_dir = Path(log_dir)
        self.key = log_stream_key(prefix)
        self.lock_key = sink_lock_key(prefix)
        self.batch_max = batch_max
        self.flush_seconds = flush_seconds
        self.block_ms = block_ms
        self.lock_ttl_ms = int(lock_ttl * 1000)
        self.metrics = metrics or SinkMetrics(CollectorRegistry())
        self.token = uuid.uuid4().hex
        self.client = redis.from_url(url, decode_responses=True, socket_timeout=block_ms / 1000 + 5,
                                     socket_connect_timeout=5)
        self.holding = False
        self._buffer: list[Entry] = []
        self._buffered_at = 0.0
        self._stats_at = 0.0
        self._written_since_log = 0
        self._logged_at = 0.0
        self._committed = (0, 0)  # the last stream id written and acknowledged by this sink
        # ``clock``: the wall clock that says which UTC days are closed (tests move it)
        self.compaction = DailyCompaction(self.log_dir, self.metrics.compact_failures, clock) if compact \
            else None
        self.compact_stop_wait = compact_stop_wait

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Be the sink until ``stop`` is set, then write everything up to that moment and let go."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        waiting_logged = False
        try:
            while not stop.is_set():
                try:
                    if not await self._acquire():
                        if not waiting_logged:
                            log.info("another sink holds the lock: standing by", extra={"key": self.lock_key})
                            waiting_logged = True
                        await _wait(stop, self.lock_ttl_ms / 3000)
                        continue
                    waiting_logged = False
                    await self._ensure_group()
                    await self._recover()
                    while not stop.is_set() and await self._renew():
                        if self.compaction is not None:
                            self.compaction.poll()
                        await self._step(block=True)
                except _ERRORS as e:
                    log.warning("event-log sink: Redis error, retrying",
                                extra={"error": f"{type(e).__name__}: {e}"})
                    self._buffer.clear()  # still pending in Redis: the next recovery writes them
                    await _wait(stop, 1.0)
            if self.compaction is not None:
                self.compaction.halt()  # finishes the day it is on while the drain runs
            if self.holding:
                await self._drain()
            await self._await_compaction()
        finally:
            if self.compaction is not None:
                self.compaction.halt()
            await self._release()
            await self.client.aclose()

    async def _await_compaction(self) -> None:
        """Wait up to ``compact_stop_wait`` seconds for a compaction pass to finish its day, renewing
        the lock meanwhile (a standby taking over would find the compaction lock taken); then leave
        it behind (safe: see service.eventlog.autocompact)."""
        if self.compaction is None:
            return
        deadline = time.monotonic() + self.compact_stop_wait
        while not await self.compaction.wait(min(self.lock_ttl_ms / 3000, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                self.compaction.abandon()
                return
            if self.holding:
                with contextlib.suppress(*_ERRORS):
                    await self._renew()

    async def _step(self, *, block: bool) -> int:
        """Read once (waiting up to ``block_ms`` for entries), commit when the batch is due; the number
        of entries read."""
        want = self.batch_max - len(self._buffer)
        await self._observe()
        resp = await self.client.xreadgroup(GROUP, CONSUMER, {self.key: ">"}, count=want,
                                            block=self.block_ms if block else None)
        entries = _entries(resp)
        if entries and not self._buffer:
            self._buffered_at = time.monotonic()
        self._buffer += entries
        due = len(self._buffer) >= self.batch_max or (
            self._buffer and time.monotonic() - self._buffered_at >= self.flush_seconds)
        if due or (self._buffer and not block):
            await self._commit(self._buffer)
            self._buffer = []
        return len(entries)

    async def _drain(self) -> None:
        """Write everything the stream holds now (entries appended meanwhile wait for the next sink),
        renewing the lock as it goes: a standby that took over mid-drain would remove the files of a
        batch it finds uncommitted. Errors are logged, not raised: the process is stopping anyway, and
        what is left stays pending in Redis for the next sink."""
        try:
            end = files.newest_sid(await self.client.xrevrange(self.key, count=1))
            while await self._renew() and await self._step(block=False) and self._committed < end:
                pass
            if self._buffer and self.holding:
                await self._commit(self._buffer)
                self._buffer = []
            log.info("event-log sink drained", extra={"log_dir": str(self.log_dir)})
        except (*_ERRORS, ValueError) as e:
            log.error("event-log sink could not write everything before stopping: the rest stays in "
                      "Redis for the next sink", extra={"error": f"{type(e).__name__}: {e}"})

    # ------------------------------------------------------------------ commit and recovery

    async def _commit(self, entries: Sequence[Entry]) -> None:
        records, bad = await asyncio.to_thread(self._write, entries)
        ids = [i for i, _ in entries]
        for k in range(0, len(ids), 5000):
            await self.client.xack(self.key, GROUP, *ids[k:k + 5000])
        self.metrics.written.inc(records)
        self.metrics.bad.inc(bad)
        self.metrics.last_write.set_to_current_time()
        self._written_since_log += records
        self._committed = files.sid(ids[-1])

    def _write(self, entries: Sequence[Entry]) -> tuple[int, int]:
        texts = []
        for stream_id, fields in entries:
            text = (fields or {}).get("r")
            if text is None:
                why = "a pending entry was trimmed from the stream before it was written" if fields is None \
                    else "skipped a stream entry that is not an event-log record"
                log.warning(why, extra={"id": stream_id, "fields": str(fields)[:200]})
            else:
                texts.append(text)
        table, bad = decode_table(texts)
        if bad:
            log.warning("skipped stream entries that are not event-log records", extra={"count": bad})
        if table.num_rows:
            written = files.write_batch(self.log_dir, table, entries[0][0], entries[-1][0])
            self.metrics.files.inc(len(written))
        files.write_checkpoint(self.log_dir, entries[-1][0])
        return table.num_rows, bad + len(entries) - len(texts)

    async def _recover(self) -> None:
        """Entries read before a crash and never acknowledged: those the checkpoint covers are in files
        (acknowledge them); the rest are written again, after the interrupted batch's files are removed."""
        checkpoint = files.read_checkpoint(self.log_dir)
        cursor, cleaned = "0", False
        while True:
            resp = await self.client.xreadgroup(GROUP, CONSUMER, {self.key: cursor}, count=self.batch_max)
            entries = _entries(resp)
            if not entries:
                return
            cursor = entries[-1][0]
            done = [i for i, _ in entries if files.sid(i) <= files.sid(checkpoint)]
            if done:
                await self.client.xack(self.key, GROUP, *done)
            rest = [e for e in entries if files.sid(e[0]) > files.sid(checkpoint)]
            if rest:
                if not cleaned:
                    removed = await asyncio.to_thread(files.remove_uncommitted, self.log_dir, checkpoint)
                    log.info("event-log sink: rewriting a batch that was not committed",
                             extra={"entries": len(rest), "removed_files": [str(p) for p in removed]})
                    cleaned = True
                await self._commit(rest)

    async def _ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def _observe(self) -> None:
        """Before a read, at most once a second: the backlog and stream size for the metrics, and
        records the stream's cap dropped before anyone read them (lost: counted and logged; only
        visible before the read, which jumps over the gap); a line of progress each minute."""
        now = time.monotonic()
        if now - self._stats_at < 1.0:
            return
        self._stats_at = now
        stream = await self.client.xinfo_stream(self.key)
        group = next((g for g in await self.client.xinfo_groups(self.key) if g["name"] == GROUP), None)
        length = stream["length"]
        self.metrics.stream_len.set(length)
        if group is None:
            return
        last = files.sid(group["last-delivered-id"])
        first = stream.get("first-entry")
        all_unread = first is None or files.sid(first[0]) > last
        # entries the group never read = added - read; those not in the stream any more were trimmed
        added, read = stream.get("entries-added"), group.get("entries-read")
        lost = added - read - length if all_unread and added is not None and read is not None else 0
        if lost > 0:
            self.metrics.overruns.inc()
            self.metrics.lost.inc(lost)
            log.error("the event-log stream's cap dropped records no sink had read: they are lost; keep "
                      "the sink running or raise MALLREC_LOG_MAXLEN", extra={"key": self.key, "lost": lost})
        if files.sid(stream.get("last-generated-id", "0-0")) <= last:
            unread = 0
        elif all_unread or group.get("lag") is None:
            unread = length
        else:
            unread = min(group["lag"], length)
        self.metrics.backlog.set(unread + group["pending"])
        if now - self._logged_at >= 60:
            self._logged_at = now
            log.info("event-log sink", extra={"written_last_minute": self._written_since_log,
                                               "stream_entries": length})
            self._written_since_log = 0

    # ------------------------------------------------------------------ the lock

    async def _acquire(self) -> bool:
        if await self.client.set(self.lock_key, self.token, nx=True, px=self.lock_ttl_ms):
            self.holding = True
            self._stats_at = 0.0  # look for records lost while no sink ran before the first read
            self.metrics.active.set(1)
            log.info("event-log sink started", extra={"log_dir": str(self.log_dir), "stream": self.key})
        return self.holding

    async def _renew(self) -> bool:
        if not await self.client.eval(_RENEW, 1, self.lock_key, self.token, self.lock_ttl_ms):
            log.error("event-log sink lost its lock (paused for longer than its TTL?): standing by")
            self.holding = False
            self.metrics.active.set(0)
            self._buffer.clear()
        return self.holding

    async def _release(self) -> None:
        if self.holding:
            with contextlib.suppress(*_ERRORS):  # else it expires by itself
                await self.client.eval(_RELEASE, 1, self.lock_key, self.token)
            self.holding = False
            self.metrics.active.set(0)


def _entries(resp: list[Any] | dict[Any, Any] | None) -> list[Entry]:
    if not resp:
        return []
    if isinstance(resp, dict):  # RESP3
        return [e for v in resp.values() for e in (v[0] if v and isinstance(v[0], list) else v)]
    return [e for _key, es in resp for e in es]


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
