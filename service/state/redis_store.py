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
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.domain import Event, OnlineState, StateUnavailable
from service.state.keys import (
    SEEN,
    SERVED,
    day_of,
    decode_event,
    encode_event,
    events_key,
    impressions_from_hash,
    impressions_key,
    past_days,
)
from service.state.served_buffer import ServedBuffer, grouped

log = logging.getLogger(__name__)
_ERRORS = (redis.RedisError, OSError, TimeoutError)
#: A flush's pages in one EVALSHA: per key, HINCRBY {kind}{item} by its count, then EXPIRE.
#: ARGV = ttl, field prefix, then per key: n, item_1, count_1, ..., item_n, count_n.
#: (A pipeline of HINCRBYs costs the event loop ~20 us of packing and parsing per item.)
_COUNT_SERVED = """
local a = 3
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  for i = 1, n do redis.call('HINCRBY', KEYS[k], ARGV[2] .. ARGV[a + 2 * i - 1], ARGV[a + 2 * i]) end
  redis.call('EXPIRE', KEYS[k], ARGV[1])
  a = a + 1 + 2 * n
end
return #KEYS
"""


#: The state read in one EVALSHA: the member's recent events (KEYS[1], at most ARGV[1]), then one
#: impressions hash per day (KEYS[2..]), each as a flat field/value list. The whole read took a median
#: 603 us of client CPU this way against 794 us with redis-py's pipeline (load_tests/bench_redis_read.py).
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
                 on_drop: Callable[[int], None] = lambda n: None, scripted_read: bool = True) -> None:
        self.url = url
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
        self._count_served = self.client.register_script(_COUNT_SERVED)
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

    async def _fetch(self, keys: list[str]) -> list:
        """[recent events, impressions hash per day] of ``keys`` (events key, then one per day)."""
        if self.scripted_read:
            raw_events, *flat = await self._read(keys=keys, args=[self.max_events])
            return [raw_events, *(dict(zip(f[::2], f[1::2], strict=True)) for f in flat)]
        pipe = self.client.pipeline(transaction=False)
        pipe.lrange(keys[0], 0, self.max_events - 1)
        for key in keys[1:]:
            pipe.hgetall(key)
        return await pipe.execute()

    async def record_events(self, events: Sequence[Event]) -> None:
        if not events:
            return
        if not self._may_try():
            raise StateUnavailable("online state store unreachable: events not recorded, retry later")
        behaviour: dict[str, list[str]] = defaultdict(list)
        seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for ev in events:
            if ev.event == "impression":
                seen[impressions_key(self.prefix, ev.member_id, day_of(ev.ts))].append((ev.item_id, SEEN))
            else:
                behaviour[ev.member_id].append(encode_event(ev))
        pipe = self.client.pipeline(transaction=False)
        for member_id, encoded in behaviour.items():
            key = events_key(self.prefix, member_id)
            pipe.lpush(key, *encoded)  # pushed one by one: the last event sent ends up first
            pipe.ltrim(key, 0, self.max_events - 1)
            pipe.expire(key, self.events_ttl)
        self._count_into(pipe, seen)
        try:
            async with asyncio.timeout(self.timeout * 2):
                await pipe.execute()
        except _ERRORS as e:
            self._failed("write", e)
            raise StateUnavailable("online state store unreachable: events not recorded, "
                                   "retry later") from e
        self._ok()

    async def record_served(self, member_id: str, item_ids: Sequence[str], now: float) -> None:
        """Queue the page's items; the next flush writes them (see the module docstring)."""
        if not item_ids:
            return
        dropped = self._served.add(member_id, day_of(now), tuple(item_ids))
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
            keys, args = [], [self.impressions_ttl, SERVED]
            for key, counts in grouped(batch, self._key).items():
                keys.append(key)
                args.append(len(counts))
                for item, n in counts.items():
                    args += (item, n)
            try:
                async with asyncio.timeout(self.timeout * 2):
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

    def _count_into(self, pipe: redis.client.Pipeline, counts: dict[str, list[tuple[str, str]]]) -> None:
        for key, fields in counts.items():
            for item, kind in fields:
                pipe.hincrby(key, kind + item, 1)
            pipe.expire(key, self.impressions_ttl)

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


def with_unwritten(fields: dict[str, str], counts: Counter[str] | None) -> dict[str, str]:
    """An impressions hash plus served counts not yet written to it."""
    if not counts:
        return fields
    fields = dict(fields)
    for item, n in counts.items():
        name = SERVED + item
        fields[name] = str(int(fields.get(name, 0)) + n)
    return fields
