"""In-process state store with the Redis adapter's semantics (caps, per-day impressions).

For unit tests and offline tools; ``fail = True`` makes it behave like an unreachable store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from service.domain import Event, OnlineState, StateUnavailable, Tracked
from service.eventlog import schema
from service.state.keys import SEEN, SERVED, day_of, impressions_from_hash, past_days
from service.validation import derived_id


class InMemoryStateStore:
    def __init__(self, max_events: int = 100) -> None:
        self.max_events = max_events
        self.events: dict[str, list[Event]] = defaultdict(list)  # newest first
        self.impressions: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)  # (member, day)
        self.fail = False
        self.seen_ids: set[tuple[str, str]] = set()  # (member, event id): resends are duplicates
        self.log: list[str] = []  # encoded event-log records, as the Redis store appends them

    async def read(self, member_id: str, now: float, days: int = 1) -> OnlineState:
        if self.fail:
            return OnlineState.unavailable()
        past = [impressions_from_hash(self.impressions.get((member_id, d), {})) for d in past_days(now, days)]
        return OnlineState(list(self.events.get(member_id, [])),
                           impressions_from_hash(self.impressions.get((member_id, day_of(now)), {})),
                           past_impressions=past)

    async def record_events(self, events: Sequence[Event]) -> Tracked:
        if self.fail:
            raise StateUnavailable("state store is down (fake)")
        new, by_event = 0, dict[str, int]()
        for ev in events:
            key = (ev.member_id, ev.event_id or derived_id(ev))
            if key in self.seen_ids:
                continue
            self.seen_ids.add(key)
            new += 1
            by_event[ev.event] = by_event.get(ev.event, 0) + 1
            self.log.append(schema.encode(schema.log_record(ev)))
            if ev.event == "impression":
                self._count(ev.member_id, SEEN + ev.item_id, ev.ts)
            else:
                lst = self.events[ev.member_id]
                lst.insert(0, ev)
                del lst[self.max_events:]
        return Tracked(new, len(events) - new, by_event)

    async def record_served(self, member_id: str, item_ids: Sequence[str], now: float,
                            records: Sequence[str] = ()) -> None:
        if not self.fail:
            for item in item_ids:
                self._count(member_id, SERVED + item, now)
            self.log += records

    def _count(self, member_id: str, field_name: str, ts: float) -> None:
        day = self.impressions[(member_id, day_of(ts))]
        day[field_name] = str(int(day.get(field_name, 0)) + 1)

    async def flush(self) -> None:
        return None  # record_served wrote already

    async def close(self) -> None:
        return None
