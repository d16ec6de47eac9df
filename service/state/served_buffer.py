"""Served impressions waiting to be written (the Redis store's write-behind), bounded.

A page's served items are queued here when the answer goes out, and written to Redis by the
store's next flush, many pages in one command. Until that write is answered they stay in
``pending``, so a read of the same member in the meantime still sees them (read-your-writes: a
frequency cap holds across two quick requests). The queue holds at most ``max_pages`` pages: when
Redis cannot take them, the oldest are dropped (and counted), memory never grows past that.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

#: (member id, day, served item ids, their event-log records: encoded, or none when the log is off)
Entry = tuple[str, str, tuple[str, ...], tuple[str, ...]]


class ServedBuffer:
    def __init__(self, max_pages: int = 10_000) -> None:
        self.max_pages = max(1, max_pages)
        self.queue: deque[Entry] = deque()  # not written yet, oldest first
        #: (member, day) -> item -> times served, for everything queued or being written
        self.pending: dict[tuple[str, str], Counter[str]] = {}

    def __len__(self) -> int:
        return len(self.queue)

    def add(self, member_id: str, day: str, items: tuple[str, ...], records: tuple[str, ...] = ()) -> int:
        """Queue one page; returns how many served items were dropped to stay within bounds."""
        dropped = 0
        while len(self.queue) >= self.max_pages:
            old = self.queue.popleft()
            self._forget(old)
            dropped += len(old[2])
        self.queue.append((member_id, day, items, records))
        self.pending.setdefault((member_id, day), Counter()).update(items)
        return dropped

    def take(self, max_pages: int) -> list[Entry]:
        """The oldest pages, out of the queue but still pending until ``done``."""
        q = self.queue
        return [q.popleft() for _ in range(min(max_pages, len(q)))]

    def done(self, batch: list[Entry]) -> None:
        """A written (or given up) batch: no longer pending."""
        for entry in batch:
            self._forget(entry)

    def counts(self, member_id: str, day: str) -> Counter[str] | None:
        """Served counts of one member's day not yet known to be in Redis (None: nothing), as a
        snapshot: a flush answered later does not change it."""
        found = self.pending.get((member_id, day))
        return Counter(found) if found else None

    def _forget(self, entry: Entry) -> None:
        key = (entry[0], entry[1])
        counts = self.pending.get(key)
        if counts is None:
            return
        counts.subtract(entry[2])
        for item in [i for i, n in counts.items() if n <= 0]:
            del counts[item]
        if not counts:
            del self.pending[key]


def grouped(batch: list[Entry], key_of: Callable[[str, str], str]) -> dict[str, Counter[str]]:
    """Redis key -> item -> count: one batch's pages merged (a member served twice is one key)."""
    out: dict[str, Counter[str]] = {}
    for member_id, day, items, _records in batch:
        out.setdefault(key_of(member_id, day), Counter()).update(items)
    return out
