"""The state port: the few operations the service needs from its online state store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from service.domain import Event, OnlineState, Tracked


class StateStore(Protocol):
    async def read(self, member_id: str, now: float, days: int = 1) -> OnlineState:
        """Recent events (newest first) and today's impressions (plus ``days - 1`` earlier days' for
        frequency caps over a window); never raises: a store that cannot be read answers
        ``OnlineState.unavailable()`` (degraded)."""
        ...

    async def record_events(self, events: Sequence[Event]) -> Tracked:
        """Store behaviour and impression events whose ``event_id`` was not stored in the last day, and
        append them to the event log, all or none; raises StateUnavailable when it cannot (the caller
        may resend: stored events come back as duplicates)."""
        ...

    async def record_served(self, member_id: str, item_ids: Sequence[str], now: float,
                            records: Sequence[str] = ()) -> None:
        """Count served items as impressions and log their ``records`` (encoded event-log records;
        best effort: never raises). Awaited inside the request,
        so it must not wait on I/O: a store with a round trip queues the items here (write-behind),
        merges what it has not written yet into ``read`` and writes it in ``flush``."""
        ...

    async def flush(self) -> None:
        """Write whatever ``record_served`` still holds (shutdown drain)."""
        ...

    async def close(self) -> None: ...
