"""The state store on Redis (redis-py asyncio): one pipelined round trip per request.

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
from collections import defaultdict
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

log = logging.getLogger(__name__)
_ERRORS = (redis.RedisError, OSError, TimeoutError)
#: HINCRBY {kind}{item} 1 for each item, then EXPIRE: record_served's whole page in one EVALSHA.
#: ARGV = ttl, field prefix, item ids...; returns the number of items counted.
_COUNT_SERVED = """
for i = 3, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[2] .. ARGV[i], 1) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return #ARGV - 2
"""


class RedisStateStore:
    def __init__(self, url: str, *, prefix: str = "mallrec:", max_events: int = 100,
                 events_ttl: int = 30 * 86400, impressions_ttl: int = 2 * 86400,
                 timeout: float = 0.1, retry_after: float = 1.0, open_after: int = 3,
                 on_error: Callable[[str], None] = lambda op: None) -> None:
        self.url = url
        self.prefix = prefix
        self.max_events = max_events
        self.events_ttl = events_ttl
        self.impressions_ttl = impressions_ttl
        self.timeout = timeout
        self.retry_after = retry_after
        self.open_after = max(1, open_after)
        self.on_error = on_error
        self.client = redis.from_url(url, decode_responses=True, socket_timeout=timeout,
                                     socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self.safe_url = re.sub(r"//[^@/]*@", "//***@", url)  # never log a password
        self._count_served = self.client.register_script(_COUNT_SERVED)
        self._down_until = 0.0
        self._down = False
        self._failures = 0  # in a row
        self._failing_since = 0.0  # when the first of them started

    # ------------------------------------------------------------------ port

    async def read(self, member_id: str, now: float, days: int = 1) -> OnlineState:
        if not self._may_try():
            return OnlineState.unavailable()
        try:
            async with asyncio.timeout(self.timeout * 2):
                pipe = self.client.pipeline(transaction=False)
                pipe.lrange(events_key(self.prefix, member_id), 0, self.max_events - 1)
                for day in (day_of(now), *past_days(now, days)):
                    pipe.hgetall(impressions_key(self.prefix, member_id, day))
                raw_events, imp, *past = await pipe.execute()
        except _ERRORS as e:
            self._failed("read", e)
            return OnlineState.unavailable()
        self._ok()
        events = [ev for ev in (decode_event(member_id, r) for r in raw_events) if ev is not None]
        return OnlineState(events, impressions_from_hash(imp),
                           past_impressions=[impressions_from_hash(h) for h in past])

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
        if not item_ids or not self._may_try():
            return
        key = impressions_key(self.prefix, member_id, day_of(now))
        try:
            async with asyncio.timeout(self.timeout * 2):
                # one command for the whole page (a pipeline of HINCRBYs costs the event loop ~20 us
                # of packing and parsing per item; the script runs them inside Redis)
                await self._count_served(keys=[key], args=[self.impressions_ttl, SERVED, *item_ids])
        except _ERRORS as e:
            self._failed("served", e)
        else:
            self._ok()

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout * 2):
                return bool(await self.client.ping())
        except _ERRORS:
            return False

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
