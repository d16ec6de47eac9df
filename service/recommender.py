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
from dataclasses import replace

import numpy as np

from service.candidates import top
from service.candidates.similar import neighbours
from service.domain import (
    Context,
    Event,
    InvalidArgument,
    ModelUnavailable,
    NotFound,
    OnlineState,
    PageRequest,
    PageResult,
    Reason,
    ServedItem,
    SlotResult,
    Tracked,
)
from service.engine.query import SlotQuery
from service.engine.run import kept, run
from service.eventlog.schema import LogRecord, encode
from service.filters.on_shelf import OnShelf
from service.filters.stock import InStock
from service.model import ServingModel
from service.profile import MemberProfile
from service.reload import Holder
from service.slots import SlotRegistry
from service.state.port import StateStore
from service.validation import (
    TrackLimits,
    check_context,
    check_id,
    check_page_size,
    checked_events,
    quote,
)

log = logging.getLogger(__name__)
#: What a deadline keeps for the pipeline after the state read: the larger of a floor and a share of
#: the time left, so a busy process (a cold component, a loaded core) still answers in time.
PIPELINE_RESERVE = 0.025
PIPELINE_RESERVE_SHARE = 0.25


class Recommender:
    def __init__(self, models: Holder[ServingModel], slots: Holder[SlotRegistry], state: StateStore, *,
                 max_count: int = 100, record_served: bool = True, log_served: bool = False,
                 track_limits: TrackLimits = TrackLimits(),
                 on_slot_served: Callable[[str], None] = lambda slot: None,
                 arm_models: Callable[[str], ServingModel | None] = lambda version: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.models = models
        self.slots = slots
        self.state = state
        self.max_count = max_count
        self.record_served = record_served
        self.log_served = log_served  # served items become event-log records (the store appends them)
        self.track_limits = track_limits
        self.on_slot_served = on_slot_served  # e.g. the rules watcher's "served in the last hour"
        self.arm_models = arm_models  # bundle versions experiment arms serve beside the live one
        self.clock = clock

    # ------------------------------------------------------------------ use cases

    async def recommend(self, req: PageRequest, *, single: bool = False,
                        time_left: float | None = None) -> PageResult:
        """Every slot of ``req`` in order; an item placed in one slot is not offered in the next."""
        registry = self.slots.current or SlotRegistry()
        self._check_page(req, registry, single)
        model = self._model()
        request_id = req.request_id or uuid.uuid4().hex
        now = self.clock()
        state = await self._read_state(req.member_id, now, time_left, registry.impression_days)
        profiles = {model.version: MemberProfile(model, req.member_id, state, now)}
        placed: list[str] = []  # item ids already on the page: not offered again
        results = []
        for ask in req.slots:
            chosen = registry.choose(ask.slot, req.member_id, now)
            assert chosen is not None  # checked above
            slot_model, skipped = model, tuple[str, ...]()
            if chosen.model is not None and chosen.model != model.version:
                other = self.arm_models(chosen.model)
                if other is None:  # not loaded (yet, or it failed): the live model serves the arm
                    skipped = ("arm_model",)
                else:
                    slot_model = other
            profile = profiles.get(slot_model.version) or profiles.setdefault(
                slot_model.version, MemberProfile(slot_model, req.member_id, state, now))
            exclude = frozenset(slot_model.item_index[i] for i in placed if i in slot_model.item_index)
            count = min(ask.count, chosen.count) if chosen.count else ask.count
            result = run(chosen.recipe, SlotQuery(slot_model, profile, ask.slot, count, req.context, exclude,
                                                  trace=False))
            # an arm served by the live model in place of its own is not that arm: untagged, so it
            # does not blur the comparison (the response is marked degraded instead)
            tagged = not skipped
            results.append(replace(result, experiment=chosen.experiment if tagged else "",
                                   arm=chosen.arm if tagged else "", model_version=slot_model.version,
                                   degraded=result.degraded + skipped))
            placed += [i.item_id for i in result.items]
            self.on_slot_served(ask.slot)
        served = [i.item_id for r in results for i in r.items]
        # also when the state read failed: a late read is not a failed write, and while Redis is really
        # down the write-behind queue is bounded and counts what it drops
        if self.record_served and served:
            records = served_records(req.member_id, request_id, results, now,
                                     registry.version) if self.log_served else ()
            await self.state.record_served(req.member_id, served, now, records)  # queues: no I/O awaited
        skipped = (("state_store",) if state.degraded else ()) + tuple(
            dict.fromkeys(part for r in results for part in r.degraded))  # e.g. "rerank"
        return PageResult(results, model.version, registry.version, bool(skipped), request_id, skipped)

    async def similar_items(self, item_id: str, count: int) -> tuple[list[ServedItem], str]:
        """Neighbours of one item that can be bought now (in stock, on shelf)."""
        check_id("item_id", item_id)
        self._check_count("count", count)
        model = self._model()
        seed = model.item_index.get(item_id)
        if seed is None:
            raise NotFound(f"item {item_id!r} is not in model {model.version}")
        items, scores = neighbours(model, np.array([seed]), np.ones(1))
        items, scores = top(items, scores, len(items))
        q = SlotQuery(model, MemberProfile(model, "", OnlineState(), self.clock()), "similar_items", count,
                      Context(), trace=False)
        keep = kept((InStock(), OnShelf()), q, items)
        why = (Reason("similar_items", "source", f"similar to {item_id}"),)
        return [ServedItem(str(model.item_ids[i]), round(s, 6), "similar_items", why)
                for i, s in zip(items[keep][:count].tolist(), scores[keep][:count].tolist(), strict=True)
                ], model.version

    async def track(self, events: Sequence[Event]) -> Tracked:
        """Check every event, then store the batch in one round trip (all or none); resends of events
        stored within the last day come back as duplicates (a retry is always safe)."""
        checked = checked_events(events, int(self.clock()), self.track_limits)
        return await self.state.record_events(checked)

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
        check_id("member_id", req.member_id)
        check_id("request_id", req.request_id, required=False)
        if not req.slots:
            raise InvalidArgument("slots", "ask for at least one slot")
        check_page_size(len(req.slots))
        check_context(req.context)
        seen: set[str] = set()
        for i, ask in enumerate(req.slots):
            where = "" if single else f"slots[{i}]."
            check_id(f"{where}slot", ask.slot)
            if registry.get(ask.slot) is None:
                raise InvalidArgument(f"{where}slot", f"unknown slot {quote(ask.slot)}; known: "
                                      f"{', '.join(registry.names()) or 'none'}")
            if ask.slot in seen:
                raise InvalidArgument(f"{where}slot", f"slot {quote(ask.slot)} asked twice")
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
            reserve = max(PIPELINE_RESERVE, PIPELINE_RESERVE_SHARE * time_left)
            async with asyncio.timeout(max(time_left - reserve, 0.0)):
                return await read()
        except TimeoutError:
            log.warning("state read skipped: the request's deadline is too close",
                        extra={"member_id": member_id, "time_left": time_left})
            return OnlineState.unavailable()


#: Reason kinds that name a merchandiser's rule (the log's ``rules`` column, ``report --by rule``).
_RULE_KINDS = frozenset({"rule", "boost"})


def served_records(member_id: str, request_id: str, results: Sequence[SlotResult], now: float,
                   rules_version: str) -> list[str]:
    """One encoded event-log record per served item: slot, position, source and the rules that
    placed it. Ids are unique per page even when a client reuses its request ids."""
    page = uuid.uuid4().hex[:16]
    ts = int(now)
    return [encode(LogRecord(f"s-{page}-{k}-{pos}", member_id, item.item_id, "served", ts, 1, r.slot, pos,
                             request_id, item.source, r.model_version, rules_version, r.experiment, r.arm,
                             _rules_of(item)))
            for k, r in enumerate(results) for pos, item in enumerate(r.items)]


def _rules_of(item: ServedItem) -> tuple[str, ...]:
    return tuple(dict.fromkeys(x.step for x in item.reasons if x.kind in _RULE_KINDS))
