"""Request bounds, checked before anything is read or written: a rejected request changes nothing.

Each check raises ``InvalidArgument`` naming the field (``events[3].member_id``). Messages quote at
most ``QUOTE_CHARS`` characters of a bad value: echoing a huge value back makes the status trailer
larger than clients accept, and they then see RESOURCE_EXHAUSTED instead of the real error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from service.domain import TRACKED_EVENTS, Context, Event, InvalidArgument

MAX_ID_BYTES = 256
MAX_QUERY_BYTES = 1024
MAX_ORDER_ITEMS = 200
MAX_PAGE_SLOTS = 20
MAX_QUANTITY = 100_000
EARLIEST_TS = 946_684_800  # 2000-01-01T00:00:00Z
FUTURE_SLACK = 86_400  # a client clock may run ahead; further is a bug (or ms instead of seconds)
QUOTE_CHARS = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def quote(value: str) -> str:
    """``value`` for an error message: repr'd, cut to ``QUOTE_CHARS`` characters with its length."""
    if len(value) <= QUOTE_CHARS:
        return repr(value)
    return f"{value[:QUOTE_CHARS]!r}... ({len(value):,} characters)"


def check_id(field: str, value: str, *, required: bool = True) -> None:
    """An id: at most 256 bytes (UTF-8), no control characters (the storage separator is one)."""
    if not value:
        if required:
            raise InvalidArgument(field, "must not be empty")
        return
    if len(value.encode()) > MAX_ID_BYTES:
        raise InvalidArgument(field, f"at most {MAX_ID_BYTES} bytes, got {len(value.encode()):,}: "
                                     f"{quote(value)}")
    if m := _CONTROL.search(value):
        raise InvalidArgument(field, f"must not hold control characters ({m.group()!r} at "
                                     f"{m.start()}): {quote(value)}")


def check_context(ctx: Context) -> None:
    if len(ctx.query.encode()) > MAX_QUERY_BYTES:
        raise InvalidArgument("context.query", f"at most {MAX_QUERY_BYTES} bytes, got "
                                               f"{len(ctx.query.encode()):,}: {quote(ctx.query)}")
    if len(ctx.order_item_ids) > MAX_ORDER_ITEMS:
        raise InvalidArgument("context.order_item_ids", f"at most {MAX_ORDER_ITEMS} items, got "
                                                        f"{len(ctx.order_item_ids):,}")
    for i, item in enumerate(ctx.order_item_ids):
        check_id(f"context.order_item_ids[{i}]", item)
    check_id("context.page_id", ctx.page_id, required=False)


def check_page_size(n_slots: int) -> None:
    if n_slots > MAX_PAGE_SLOTS:
        raise InvalidArgument("slots", f"at most {MAX_PAGE_SLOTS} slots a page, got {n_slots:,}")


@dataclass(frozen=True)
class TrackLimits:
    max_events: int = 1000


def checked_events(events: Sequence[Event], now: int, limits: TrackLimits = TrackLimits()) -> list[Event]:
    """Every event checked, with ``ts`` (0: now), ``quantity`` (0: 1) and ``event_id`` (empty: derived
    from the fields as sent, so a resend derives the same id) filled in; the first bad one raises."""
    if len(events) > limits.max_events:
        raise InvalidArgument("events", f"at most {limits.max_events:,} events a call, got {len(events):,}; "
                                        f"split the batch")
    latest = now + FUTURE_SLACK
    out = []
    for i, ev in enumerate(events):
        at = f"events[{i}]"
        check_id(f"{at}.member_id", ev.member_id)
        check_id(f"{at}.item_id", ev.item_id)
        if ev.event not in TRACKED_EVENTS:
            raise InvalidArgument(f"{at}.event", f"unknown event {quote(ev.event)}; expected one of "
                                                 f"{', '.join(TRACKED_EVENTS)}")
        check_id(f"{at}.slot", ev.slot, required=False)
        check_id(f"{at}.request_id", ev.request_id, required=False)
        check_id(f"{at}.event_id", ev.event_id, required=False)
        if ev.ts and not EARLIEST_TS <= ev.ts <= latest:
            raise InvalidArgument(f"{at}.ts", f"must be seconds since the epoch from 2000-01-01 to one day "
                                              f"ahead of now ({latest}), or 0 for now; got {ev.ts}")
        if not 0 <= ev.quantity <= MAX_QUANTITY:
            raise InvalidArgument(f"{at}.quantity", f"must be 0 (= 1) to {MAX_QUANTITY:,}, got {ev.quantity}")
        out.append(replace(ev, ts=ev.ts or now, quantity=ev.quantity or 1,
                           event_id=ev.event_id or derived_id(ev)))
    return out


def derived_id(ev: Event) -> str:
    """An id from the event's fields as the client sent them (ts 0 stays 0): a resend matches."""
    text = "\x1f".join((ev.member_id, ev.item_id, ev.event, str(ev.ts), ev.slot, ev.request_id,
                        str(ev.quantity)))
    return "d-" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
