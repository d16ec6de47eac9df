"""The state store on Redis (redis-py asyncio): one round trip per request, on the read (one EVALSHA).

Served impressions are written behind the answer (``record_served`` only queues them in a bounded
``ServedBuffer``): a flush writes every queued page in one EVALSHA, ``flush_interval`` (5 ms) after
the first page queued, or at once when ``flush_at`` pages are waiting; ``flush()`` / ``close()``
write the rest (the server's drain path). Until a flush is answered its pages are merged into
reads of the same member, so a frequency cap sees the previous request's items even inside the
interval. The merge is conservative: the read takes the unwritten pages before it asks Redis, so a
flush that Redis applies between the two counts those pages twice (an item may be held back one
request early, never shown past its cap). While Redis is down the queue keeps at most
``max_pending`` pages, dropping the oldest (``on_drop`` counts the items); a flush that fails is
dropped too (it may have been applied: retrying could count it twice).

A dead Redis must not eat the request's deadline: timeouts are short, redis-py's own retries are
off, and once calls have failed ``open_after`` times in a row over at least one ``timeout`` the store
answers "unavailable" at once for ``retry_after`` seconds before it tries again (a small circuit
breaker). A burst of late replies does not open it: a process that stalls its own event loop (a
model loading beside the requests, or more requests in flight than one core serves in a timeout)
makes every reply it was waiting for look late at once while Redis is fine, and refusing every call
for a second would turn that moment into hundreds of failed writes. The connection pool reconnects
by itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.domain import Event, OnlineState, StateUnavailable, Tracked
from service.eventlog import schema
from service.eventlog.schema import log_record
from service.state.keys import (
    SEEN,
    SERVED,
    day_of,
    decode_event,
    encode_event,
    event_ids_key,
    events_key,
    impressions_from_hash,
    impressions_key,
    log_stream_key,
    past_days,
)
from service.state.served_buffer import ServedBuffer, grouped
from service.validation import derived_id

log = logging.getLogger(__name__)
_ERRORS = (redis.RedisError, OSError, TimeoutError)
#: An event id is remembered in its arrival day's set, and a resend is checked against today's and
#: yesterday's: recognised for at least 24 hours. The set lives until its next day is over.
_IDS_TTL = 2 * 86400
#: A flush's pages in one EVALSHA: per key, HINCRBY {kind}{item} by its count, then EXPIRE; then the
#: pages' event-log records onto the stream (KEYS[1]) when ARGV[3] (MAXLEN) is above 0.
#: ARGV = ttl, field prefix, maxlen, m, record_1..record_m, then per key: n, item_1, count_1, ...
#: (A pipeline of HINCRBYs would cost the event loop packing and parsing for every item.)
_COUNT_SERVED = """
local maxlen = tonumber(ARGV[3])
local m = tonumber(ARGV[4])
for r = 1, m do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'r', ARGV[4 + r])
end
local a = 5 + m
for k = 2, #KEYS do
  local n = tonumber(ARGV[a])
  for i = 1, n do redis.call('HINCRBY', KEYS[k], ARGV[2] .. ARGV[a + 2 * i - 1], ARGV[a + 2 * i]) end
  redis.call('EXPIRE', KEYS[k], ARGV[1])
  a = a + 1 + 2 * n
end
return #KEYS
"""

#: TrackEvents in one EVALSHA, so a batch is applied whole or not at all, and a resend is safe: an
#: event whose id is in the member's id set of today or yesterday is a duplicate and changes nothing;
#: a new one is pushed to the member's recent events (or counted as an impression) and appended to
#: the event log (KEYS[1], when ARGV[5] MAXLEN is above 0). Per event: KEYS ids today, ids yesterday,
#: target; ARGV id, kind ('b' behaviour / 'i' impression), payload, log record.
#: Returns {new, duplicates, one '1'/'0' per event}.
_TRACK = """
local ids_ttl, max_events, events_ttl, imp_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local maxlen, n = tonumber(ARGV[5]), tonumber(ARGV[6])
local new, dup, flags = 0, 0, {}
for i = 1, n do
  local k, a = 2 + 3 * (i - 1), 7 + 4 * (i - 1)
  local id = ARGV[a]
  if redis.call('SISMEMBER', KEYS[k + 1], id) == 1 or redis.call('SADD', KEYS[k], id) == 0 then
    dup = dup + 1
    flags[i] = '0'
  else
    redis.call('EXPIRE', KEYS[k], ids_ttl)
    if ARGV[a + 1] == 'b' then
      redis.call('LPUSH', KEYS[k + 2], ARGV[a + 2])
      redis.call('LTRIM', KEYS[k + 2], 0, max_events - 1)
      redis.call('EXPIRE', KEYS[k + 2], events_ttl)
    else
      redis.call('HINCRBY', KEYS[k + 2], ARGV[a + 2], 1)
      redis.call('EXPIRE', KEYS[k + 2], imp_ttl)
    end
    if maxlen > 0 then redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'r', ARGV[a + 3]) end
    new = new + 1
    flags[i] = '1'
  end
end
return {new, dup, table.concat(flags)}
"""


#: The state read in one EVALSHA: the member's recent events (KEYS[1], at most ARGV[1]), then one
#: impressions hash per day (KEYS[2..]), each as a flat field/value list: less client CPU than
#: redis-py's pipeline of the same commands (load_tests/bench_redis_read.py compares the two).
_READ = """
local out = {redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)}
for k = 2, #KEYS do out[k] = redis.call('HGETALL', KEYS[k]) end
return out
"""


class RedisStateStore:
    def __init__(self, url: str, *, prefix: str = "mallrec:", max_events: int = 100,
                 events_ttl: int = 30 * 86400, impressions_ttl: int = 2 * 86400,
                 timeout: float = 0.1, retry_after: float = 1.0, open_after: int = 3,
                 on_error: Callable[[str], None] = lambda op: None, flush_interval: float = 0.005,
                 flush_at: int = 64, max_pending: int = 10_000,
                 on_drop: Callable[[int], None] = lambda n: None, scripted_read: bool = True,
                 log_maxlen: int = 0, write_timeout: float = 2.0) -> None:
        self.url = url
        # The event log: TrackEvents' new events and the served items are appended to the stream
        # (capped near ``log_maxlen`` entries; 0: no log) in the same round trip as the state writes.
        self.log_maxlen = log_maxlen
        self.log_key = log_stream_key(prefix)
        # False: read with plain LRANGE / HGETALL, for a reader that may not run scripts (a read-only
        # user or replica: `rules preview --redis-url`); the server writes with a script anyway.
        self.scripted_read = scripted_read
        self.prefix = prefix
        self.max_events = max_events
        self.events_ttl = events_ttl
        self.impressions_ttl = impressions_ttl
        self.timeout = timeout
        self.retry_after = retry_after
        self.open_after = max(1, open_after)
        self.on_error = on_error
        self.flush_interval = flush_interval
        self.flush_at = max(1, flush_at)
        self.on_drop = on_drop
        self._served = ServedBuffer(max_pending)
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.client = redis.from_url(url, decode_responses=True, socket_timeout=timeout,
                                     socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self.safe_url = re.sub(r"//[^@/]*@", "//***@", url)  # never log a password
        # Writes get their own connections with a longer socket timeout: a batch Redis is still applying
        # when a short timeout fires would be reported as failed although it was stored.
        self.write_timeout = max(write_timeout, timeout)
        self.writer = redis.from_url(url, decode_responses=True, socket_timeout=self.write_timeout,
                                     socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self._count_served = self.writer.register_script(_COUNT_SERVED)
        self._track = self.writer.register_script(_TRACK)
        self._read = self.client.register_script(_READ)
        self._down_until = 0.0
        self._down = False
        self._failures = 0  # in a row
        self._failing_since = 0.0  # when the first of them started

    # ------------------------------------------------------------------ port

    async def read(self, member_id: str, now: float, days: int = 1) -> OnlineState:
        if not self._may_try():
            return OnlineState.unavailable()
        day_keys = (day_of(now), *past_days(now, days))
        # Pages not yet written, taken BEFORE Redis is asked: a flush answered while this read waits
        # drops its pages from the buffer, and if Redis ran the read before that flush's write the
        # pages would be in neither (a cap could let an item through once more).
        unwritten = [self._served.counts(member_id, d) for d in day_keys]
        keys = [events_key(self.prefix, member_id),
                *(impressions_key(self.prefix, member_id, day) for day in day_keys)]
        try:
            async with asyncio.timeout(self.timeout * 2):
                raw_events, *hashes = await self._fetch(keys)
        except _ERRORS as e:
            self._failed("read", e)
            return OnlineState.unavailable()
        self._ok()
        events = [ev for ev in (decode_event(member_id, r) for r in raw_events) if ev is not None]
        imp, *past = [with_unwritten(h, c) for h, c in zip(hashes, unwritten, strict=True)]
        return OnlineState(events, impressions_from_hash(imp),
                           past_impressions=[impressions_from_hash(h) for h in past])

    async def _fetch(self, keys: list[str]) -> list[Any]:
        """[recent events, impressions hash per day] of ``keys`` (events key, then one per day)."""
        if self.scripted_read:
            raw_events, *flat = await self._read(keys=keys, args=[self.max_events])
            return [raw_events, *(dict(zip(f[::2], f[1::2], strict=True)) for f in flat)]
        pipe = self.client.pipeline(transaction=False)
        pipe.lrange(keys[0], 0, self.max_events - 1)
        for key in keys[1:]:
            pipe.hgetall(key)
        return await pipe.execute()

    async def record_events(self, events: Sequence[Event]) -> Tracked:
        """Store the events whose ``event_id`` was not seen in the last day (see ``_TRACK``)."""
        if not events:
            return Tracked(0, 0)
        if not self._may_try():
            raise StateUnavailable("online state store unreachable: events not recorded, retry later")
        now = time.time()  # once: around midnight two calls could name one day twice
        today, yesterday = day_of(now), day_of(now - 86400)
        keys: list[str] = [self.log_key]
        args: list[str | int] = [_IDS_TTL, self.max_events, self.events_ttl,
                                 self.impressions_ttl, self.log_maxlen, len(events)]
        for ev in events:
            m = ev.member_id
            if ev.event == "impression":
                target, kind, payload = impressions_key(self.prefix, m, day_of(ev.ts)), "i", SEEN + ev.item_id
            else:
                target, kind, payload = events_key(self.prefix, m), "b", encode_event(ev)
            keys += (event_ids_key(self.prefix, m, today), event_ids_key(self.prefix, m, yesterday), target)
            record = schema.encode(log_record(ev)) if self.log_maxlen else ""
            args += (_id_digest(ev.event_id or derived_id(ev)), kind, payload, record)
        try:
            async with asyncio.timeout(self.write_timeout):
                new, dup, flags = await self._track(keys=keys, args=args)
        except _ERRORS as e:
            self._failed("write", e)
            raise StateUnavailable("online state store unreachable or too slow: events may not be "
                                   "recorded; retry with the same events (resends are recognised)") from e
        self._ok()
        by_event: dict[str, int] = {}
        for ev, flag in zip(events, flags, strict=True):
            if flag == "1":
                by_event[ev.event] = by_event.get(ev.event, 0) + 1
        return Tracked(int(new), int(dup), by_event)

    async def record_served(self, member_id: str, item_ids: Sequence[str], now: float,
                            records: Sequence[str] = ()) -> None:
        """Queue the page's items (and their encoded event-log records); the next flush writes them
        (see the module docstring)."""
        if not item_ids:
            return
        dropped = self._served.add(member_id, day_of(now), tuple(item_ids),
                                   tuple(records) if self.log_maxlen else ())
        if dropped:
            self.on_drop(dropped)
        self._schedule()

    async def flush(self) -> None:
        """Write every queued page now (shutdown); gives up on what Redis does not take."""
        self._bind_loop()
        while True:
            if self._flushing is not None:
                await asyncio.gather(self._flushing, return_exceptions=True)
            elif self._served.queue and self._may_try():
                self._start_flush()
            else:
                break
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def close(self) -> None:
        await self.flush()
        await self.client.aclose()
        await self.writer.aclose()

    async def persistence(self) -> str | None:
        """"aof", "rdb" or "none": what Redis keeps on disk; None when it may not be asked (CONFIG)."""
        try:
            async with asyncio.timeout(1.0):
                aof = await self.client.config_get("appendonly")
                save = await self.client.config_get("save")
        except _ERRORS:
            return None
        if aof.get("appendonly") == "yes":
            return "aof"
        return "rdb" if save.get("save") else "none"

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout * 2):
                return bool(await self.client.ping())
        except _ERRORS:
            return False

    # ------------------------------------------------------------------ write-behind

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tools, tests): the old one's timer is gone
            self._loop, self._timer, self._flushing = loop, None, None
        return loop

    def _schedule(self) -> None:
        loop = self._bind_loop()
        if self._flushing is not None:
            return  # the running flush schedules the next one when it ends
        if len(self._served) >= self.flush_at:
            self._start_flush()
        elif self._timer is None and self._served.queue:
            self._timer = loop.call_later(self.flush_interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._flushing is None and self._served.queue:
            if self._may_try():
                self._start_flush()
            else:  # the breaker is open: keep the pages (bounded) and look again later
                self._timer = asyncio.get_running_loop().call_later(
                    max(self.flush_interval, self._down_until - time.monotonic()), self._on_timer)

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flushing = asyncio.get_running_loop().create_task(self._flush_batch())

    async def _flush_batch(self) -> None:
        batch = self._served.take(self.flush_at * 8)  # bounds one script's time inside Redis
        try:
            records = [r for entry in batch for r in entry[3]]
            keys: list[str] = [self.log_key]
            args: list[str | int] = [self.impressions_ttl, SERVED, self.log_maxlen if records else 0,
                                     len(records), *records]
            for key, counts in grouped(batch, self._key).items():
                keys.append(key)
                args.append(len(counts))
                for item, n in counts.items():
                    args += (item, n)
            try:
                async with asyncio.timeout(self.write_timeout):
                    await self._count_served(keys=keys, args=args)
            except _ERRORS as e:
                self._failed("served", e)
                self.on_drop(sum(len(entry[2]) for entry in batch))
            else:
                self._ok()
        finally:
            self._served.done(batch)
            self._flushing = None
            if self._served.queue:
                self._schedule()

    def _key(self, member_id: str, day: str) -> str:
        return impressions_key(self.prefix, member_id, day)


    # ------------------------------------------------------------------ helpers

    def _may_try(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, error: BaseException) -> None:
        self.on_error(op)
        now = time.monotonic()
        if self._failures == 0:
            self._failing_since = now
        self._failures += 1
        lasting = now - self._failing_since >= self.timeout
        if not self._down and (self._failures < self.open_after or not lasting):
            return  # late replies of one moment (maybe our own loop's delay): the next call tries again
        self._down_until = time.monotonic() + self.retry_after
        if not self._down:
            self._down = True
            log.warning("online state store unreachable, serving without recent behaviour",
                        extra={"op": op, "error": f"{type(error).__name__}: {error}", "url": self.safe_url})

    def _ok(self) -> None:
        self._failures = 0
        if self._down:
            self._down = False
            log.info("online state store reachable again", extra={"url": self.safe_url})


def _id_digest(event_id: str) -> str:
    """What the id sets remember of an event id: 64 bits, so an id of any length costs the same few
    bytes (collisions within one member's two days are ~n^2/2^65: none in practice)."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


def with_unwritten(fields: dict[str, str], counts: Counter[str] | None) -> dict[str, str]:
    """An impressions hash plus served counts not yet written to it."""
    if not counts:
        return fields
    fields = dict(fields)
    for item, n in counts.items():
        name = SERVED + item
        fields[name] = str(int(fields.get(name, 0)) + n)
    return fields
