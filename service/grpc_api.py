"""The gRPC servicer: protobuf in, domain calls, protobuf out; errors become gRPC statuses.

Bad requests carry google.rpc.BadRequest details naming the field (clients read them with
``grpc_status.rpc_status.from_call``). Every call is counted and timed per method and slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.api.handlers import Undecodable
from service.domain import (
    Context,
    Event,
    InvalidArgument,
    ModelUnavailable,
    NotFound,
    PageRequest,
    PageResult,
    RequestError,
    ServedItem,
    SlotAsk,
    StateUnavailable,
)
from service.metrics import Metrics
from service.recommender import Recommender

log = logging.getLogger(__name__)
R = TypeVar("R")
_LOG_EVERY = 60.0  # seconds between two log lines about undecodable requests of one method
_STATUS = {ModelUnavailable: grpc.StatusCode.UNAVAILABLE, StateUnavailable: grpc.StatusCode.UNAVAILABLE,
           NotFound: grpc.StatusCode.NOT_FOUND}


def bad_request_status(error: InvalidArgument) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.description)]))
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(error),
                                                  details=[detail]))


def _items(items: list[ServedItem]) -> list[pb.Item]:
    return [pb.Item(item_id=i.item_id, score=i.score, source=i.source,
                    reasons=[pb.Reason(step=r.step, kind=r.kind, detail=r.detail) for r in i.reasons])
            for i in items]


def _context(ctx: pb.Context) -> Context:
    return Context(query=ctx.query, order_item_ids=tuple(ctx.order_item_ids), page_id=ctx.page_id)


class RecommenderServicer(pb_grpc.RecommenderServicer):
    """``max_in_flight`` and ``min_time_left`` shed load: a request past the bound on requests in
    flight, or one that starts with less than ``min_time_left`` seconds of its deadline (it waited
    in an overloaded process), gets RESOURCE_EXHAUSTED at once instead of queueing for seconds."""

    def __init__(self, recommender: Recommender, metrics: Metrics, *, max_in_flight: int = 256,
                 min_time_left: float = 0.005) -> None:
        self.rec = recommender
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.min_time_left = min_time_left
        self.in_flight = 0
        self._undecodable_logged: dict[str, float] = {}

    async def Recommend(self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
                        ) -> pb.RecommendResponse:
        async def call() -> pb.RecommendResponse:
            req = PageRequest(request.member_id, (SlotAsk(request.slot, request.count),),
                              _context(request.context), request.request_id)
            page = await self.rec.recommend(req, single=True, time_left=context.time_remaining())
            self._count_degraded(page)
            slot = page.slots[0]
            return pb.RecommendResponse(items=_items(slot.items), model_version=slot.model_version,
                                        rules_version=page.rules_version, degraded=page.degraded,
                                        request_id=page.request_id, slot=request.slot,
                                        experiment=slot.experiment, arm=slot.arm)

        if isinstance(request, Undecodable):
            return await self._undecodable("Recommend", request, context)
        return await self._serve("Recommend", self._slot_label(request.slot), context, call)

    async def RecommendPage(self, request: pb.RecommendPageRequest, context: grpc.aio.ServicerContext
                            ) -> pb.RecommendPageResponse:
        async def call() -> pb.RecommendPageResponse:
            req = PageRequest(request.member_id, tuple(SlotAsk(s.slot, s.count) for s in request.slots),
                              _context(request.context), request.request_id)
            page = await self.rec.recommend(req, time_left=context.time_remaining())
            self._count_degraded(page)
            return pb.RecommendPageResponse(
                slots=[pb.SlotItems(slot=r.slot, items=_items(r.items), experiment=r.experiment, arm=r.arm)
                       for r in page.slots],
                model_version=page.model_version, rules_version=page.rules_version,
                degraded=page.degraded, request_id=page.request_id)

        if isinstance(request, Undecodable):
            return await self._undecodable("RecommendPage", request, context)
        return await self._serve("RecommendPage", "page", context, call)

    async def SimilarItems(self, request: pb.SimilarItemsRequest, context: grpc.aio.ServicerContext
                           ) -> pb.SimilarItemsResponse:
        async def call() -> pb.SimilarItemsResponse:
            items, version = await self.rec.similar_items(request.item_id, request.count)
            return pb.SimilarItemsResponse(items=_items(items), model_version=version)

        if isinstance(request, Undecodable):
            return await self._undecodable("SimilarItems", request, context)
        return await self._serve("SimilarItems", "-", context, call)

    async def TrackEvents(self, request: pb.TrackEventsRequest, context: grpc.aio.ServicerContext
                          ) -> pb.TrackEventsResponse:
        async def call() -> pb.TrackEventsResponse:
            events = [Event(e.member_id, e.item_id, e.event, e.ts, e.slot, e.request_id, e.event_id,
                            e.quantity) for e in request.events]
            tracked = await self.rec.track(events)
            for name, n in tracked.new_by_event.items():
                self.metrics.events.labels(name).inc(n)
            if tracked.duplicates:
                self.metrics.duplicate_events.inc(tracked.duplicates)
            return pb.TrackEventsResponse(accepted=len(events), new_events=tracked.new,
                                          duplicates=tracked.duplicates)

        if isinstance(request, Undecodable):
            return await self._undecodable("TrackEvents", request, context)
        return await self._serve("TrackEvents", "-", context, call)

    # ------------------------------------------------------------------ helpers

    def _slot_label(self, slot: str) -> str:
        return slot if self.rec.knows_slot(slot) else "unknown"  # bounded label values

    def _count_degraded(self, page: PageResult) -> None:
        for reason in page.degraded_reasons:  # "state_store", "rerank"
            self.metrics.degraded.labels(reason).inc()

    async def _undecodable(self, method: str, request: Undecodable, context: grpc.aio.ServicerContext
                           ) -> NoReturn:
        """Counted, logged at most once a minute per method (no traceback), INVALID_ARGUMENT."""
        self.metrics.undecodable.labels(method).inc()
        self.metrics.requests.labels(method, "-", grpc.StatusCode.INVALID_ARGUMENT.name).inc()
        now = time.monotonic()
        if now - self._undecodable_logged.get(method, -_LOG_EVERY) >= _LOG_EVERY:
            self._undecodable_logged[method] = now
            log.warning("request body is not a valid message (logged once a minute; counted in "
                        "mallrec_undecodable_requests_total)",
                        extra={"method": method, "type": request.message_type, "error": request.error})
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"request body is not a valid {request.message_type}: {request.error}")
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def _shed(self, context: grpc.aio.ServicerContext) -> str | None:
        if self.in_flight >= self.max_in_flight:
            return "in_flight"
        left = context.time_remaining()
        if left is not None and left < self.min_time_left:
            return "deadline"
        return None

    async def _serve(self, method: str, slot: str, context: grpc.aio.ServicerContext,
                     call: Callable[[], Awaitable[R]]) -> R:
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        if (why := self._shed(context)) is not None:
            self.metrics.shed.labels(why).inc()
            self.metrics.requests.labels(method, slot, grpc.StatusCode.RESOURCE_EXHAUSTED.name).inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                "server busy: too many requests in flight, retry with backoff"
                                if why == "in_flight" else
                                "server busy: the request's deadline passed while it waited to start")
        self.in_flight += 1
        try:
            return await call()
        except InvalidArgument as e:
            code = grpc.StatusCode.INVALID_ARGUMENT
            await context.abort_with_status(bad_request_status(e))
        except RequestError as e:
            code = _STATUS.get(type(e), grpc.StatusCode.FAILED_PRECONDITION)
            await context.abort(code, str(e))
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client left or its deadline passed
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("request failed", extra={"method": method, "slot": slot})
            await context.abort(code, "internal error (logged on the server)")
        finally:
            self.in_flight -= 1
            self.metrics.requests.labels(method, slot, code.name).inc()
            self.metrics.latency.labels(method, slot).observe(time.perf_counter() - t0)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover
