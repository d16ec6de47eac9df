"""The service's use cases: recommend a page, similar items, track events. No gRPC here.

A request takes one model and one slot registry at its start (``Holder.current``), reads the
member's online state in one round trip (bounded by the request's deadline: a slow store is
skipped and the answer is marked degraded), runs each slot's recipe and records what it served.
A slot that had to skip a part (the re-ranker fell back to the first-stage order) marks the answer
degraded too; ``PageResult.degraded_reasons`` says which parts.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence

import numpy as np

from service.candidates import candidates
from service.candidates.similar import neighbours
from service.domain import (
    TRACKED_EVENTS,
    Context,
    Event,
    InvalidArgument,
    ModelUnavailable,
    NotFound,
    OnlineState,
    PageRequest,
    PageResult,
    ServedItem,
)
from service.filters.on_shelf import OnShelf
from service.filters.stock import InStock
from service.model import ServingModel
from service.pipeline import SlotQuery, apply_filters, run
from service.profile import MemberProfile
from service.reload import Holder
from service.slots import SlotRegistry
from service.state.port import StateStore

log = logging.getLogger(__name__)
PIPELINE_RESERVE = 0.01  # seconds of a deadline kept for the pipeline after the state read


class Recommender:
    def __init__(self, models: Holder[ServingModel], slots: Holder[SlotRegistry], state: StateStore, *,
                 max_count: int = 100, record_served: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.models = models
        self.slots = slots
        self.state = state
        self.max_count = max_count
        self.record_served = record_served
        self.clock = clock

    # ------------------------------------------------------------------ use cases

    async def recommend(self, req: PageRequest, *, single: bool = False,
                        time_left: float | None = None) -> PageResult:
        """Every slot of ``req`` in order; an item placed in one slot is not offered in the next."""
        registry = self.slots.current or SlotRegistry()
        self._check_page(req, registry, single)
        model = self._model()
        now = self.clock()
        state = await self._read_state(req.member_id, now, time_left, registry.impression_days)
        profile = MemberProfile(model, req.member_id, state, now)
        placed: set[int] = set()
        results = []
        for ask in req.slots:
            recipe = registry.get(ask.slot)
            assert recipe is not None  # checked above
            result = run(recipe, SlotQuery(model, profile, ask.slot, ask.count, req.context, placed,
                                           trace=False))
            placed.update(model.item_index[i.item_id] for i in result.items)
            results.append(result)
        served = [i.item_id for r in results for i in r.items]
        if self.record_served and served and not state.degraded:
            await self.state.record_served(req.member_id, served, now)  # queues: no I/O awaited
        skipped = (("state_store",) if state.degraded else ()) + tuple(
            dict.fromkeys(part for r in results for part in r.degraded))  # e.g. "rerank"
        return PageResult(results, model.version, registry.version, bool(skipped),
                          req.request_id or uuid.uuid4().hex, skipped)

    async def similar_items(self, item_id: str, count: int) -> tuple[list[ServedItem], str]:
        """Neighbours of one item that can be bought now (in stock, on shelf)."""
        if not item_id:
            raise InvalidArgument("item_id", "must not be empty")
        self._check_count("count", count)
        model = self._model()
        seed = model.item_index.get(item_id)
        if seed is None:
            raise NotFound(f"item {item_id!r} is not in model {model.version}")
        items, scores, _ = neighbours(model, np.array([seed]), np.ones(1))
        found = candidates("similar_items", items, scores, len(items), lambda i, s: f"similar to {item_id}")
        q = SlotQuery(model, MemberProfile(model, "", OnlineState(), self.clock()), "similar_items", count,
                      Context(), trace=False)
        kept = apply_filters((InStock(), OnShelf()), q, found)[:count]
        return [ServedItem(str(model.item_ids[c.item]), round(c.score, 6), c.source, tuple(c.reasons))
                for c in kept], model.version

    async def track(self, events: Sequence[Event]) -> int:
        """Validate then store all events in one round trip (all or none)."""
        now = int(self.clock())
        checked = []
        for i, ev in enumerate(events):
            for name in ("member_id", "item_id"):
                if not getattr(ev, name):
                    raise InvalidArgument(f"events[{i}].{name}", "must not be empty")
            if ev.event not in TRACKED_EVENTS:
                raise InvalidArgument(f"events[{i}].event", f"unknown event {ev.event!r}; "
                                      f"expected one of {', '.join(TRACKED_EVENTS)}")
            if ev.ts < 0:
                raise InvalidArgument(f"events[{i}].ts", "must be seconds since the epoch, or 0 for now")
            checked.append(ev if ev.ts else Event(ev.member_id, ev.item_id, ev.event, now, ev.slot,
                                                  ev.request_id))
        await self.state.record_events(checked)
        return len(checked)

    def knows_slot(self, slot: str) -> bool:
        registry = self.slots.current
        return registry is not None and registry.get(slot) is not None

    async def drain(self) -> None:
        """Write the served impressions the state store still holds before shutting down."""
        await self.state.flush()

    # ------------------------------------------------------------------ helpers

    def _model(self) -> ServingModel:
        model = self.models.current
        if model is None:
            raise ModelUnavailable("no model loaded yet: publish one with `mallrec train`")
        return model

    def _check_page(self, req: PageRequest, registry: SlotRegistry, single: bool) -> None:
        if not req.member_id.strip():
            raise InvalidArgument("member_id", "must not be empty")
        if not req.slots:
            raise InvalidArgument("slots", "ask for at least one slot")
        seen: set[str] = set()
        for i, ask in enumerate(req.slots):
            where = "" if single else f"slots[{i}]."
            if registry.get(ask.slot) is None:
                raise InvalidArgument(f"{where}slot", f"unknown slot {ask.slot!r}; known: "
                                      f"{', '.join(registry.names()) or 'none'}")
            if ask.slot in seen:
                raise InvalidArgument(f"{where}slot", f"slot {ask.slot!r} asked twice")
            seen.add(ask.slot)
            self._check_count(f"{where}count", ask.count)

    def _check_count(self, field_path: str, count: int) -> None:
        if not 1 <= count <= self.max_count:
            raise InvalidArgument(field_path, f"must be between 1 and {self.max_count}, got {count}")

    async def _read_state(self, member_id: str, now: float, time_left: float | None,
                          days: int = 1) -> OnlineState:
        # a window of days only when a frequency cap asks for one (stores written for the old port work)
        read = (lambda: self.state.read(member_id, now)) if days <= 1 else \
            (lambda: self.state.read(member_id, now, days))
        if time_left is None:
            return await read()
        try:
            async with asyncio.timeout(max(time_left - PIPELINE_RESERVE, 0.0)):
                return await read()
        except TimeoutError:
            log.warning("state read skipped: the request's deadline is too close",
                        extra={"member_id": member_id, "time_left": time_left})
            return OnlineState.unavailable()
