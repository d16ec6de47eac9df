"""Key layout and encodings shared by the Redis adapter and the in-memory fake.

    {prefix}ev:{member}         list, newest first, capped, TTL: recent behaviour events
    {prefix}imp:{member}:{day}  hash, TTL: today's impressions; field s:{item} = times served,
                                f:{item} = impressions the frontend reported
    {prefix}eid:{member}:{day}  set, TTL: ids of the events TrackEvents stored that day (arrival
                                day): a resend is recognised against today's and yesterday's set
    {prefix}log                 stream, capped (MAXLEN ~): the event log on its way to the sink
    {prefix}log:sink            string with a TTL: the lock of the one sink that reads the stream

An item's impressions = max(served, reported): frontends that report impressions are exact,
ones that do not still get the served counts, and nothing is counted twice.
"""

from __future__ import annotations

import time

from service.domain import Event

SEP = "\x1f"  # ASCII unit separator: cannot appear in ids the frontend sends as text
SERVED, SEEN = "s:", "f:"


def day_of(ts: float) -> str:
    """The impressions day of ``ts``: a UTC calendar day."""
    return time.strftime("%Y%m%d", time.gmtime(ts))


def past_days(now: float, days: int) -> list[str]:
    """The ``days - 1`` days before ``now``'s day, yesterday first (a frequency cap's window)."""
    return [day_of(now - k * 86400) for k in range(1, days)]


def events_key(prefix: str, member_id: str) -> str:
    return f"{prefix}ev:{member_id}"


def impressions_key(prefix: str, member_id: str, day: str) -> str:
    return f"{prefix}imp:{member_id}:{day}"


def event_ids_key(prefix: str, member_id: str, day: str) -> str:
    return f"{prefix}eid:{member_id}:{day}"


def log_stream_key(prefix: str) -> str:
    return f"{prefix}log"


def sink_lock_key(prefix: str) -> str:
    return f"{prefix}log:sink"


def encode_event(ev: Event) -> str:
    return SEP.join((ev.item_id, ev.event, str(int(ev.ts)), ev.slot, ev.request_id))


def decode_event(member_id: str, raw: str) -> Event | None:
    parts = raw.split(SEP)
    if len(parts) != 5 or not parts[2].lstrip("-").isdigit():
        return None  # written by something else: skip rather than fail the request
    item, event, ts, slot, request_id = parts
    return Event(member_id, item, event, int(ts), slot, request_id)


def impressions_from_hash(fields: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in fields.items():
        if name[:2] in (SERVED, SEEN):
            item = name[2:]
            out[item] = max(out.get(item, 0), int(value))
    return out
