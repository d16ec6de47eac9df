"""A small client for the Recommender API, shared by `mallrec recommend`, the demo and the tests.

It speaks grpc.aio, turns request errors into one readable line (naming the bad field from the
google.rpc BadRequest details) and prints slots as rich tables with their reasons.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rich.console import Console
from rich.table import Table

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.errors import MallrecError

Reply = TypeVar("Reply")

BUILT_IN_SLOTS = ("search_box", "check_in", "delivery")


class RpcFailed(MallrecError):
    """The server answered with an error (or could not be reached)."""


def bad_fields(error: grpc.RpcError) -> list[str]:
    """Field names from the BadRequest details of an INVALID_ARGUMENT error."""
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            fields += [v.field for v in br.field_violations]
    return fields


def describe_error(error: grpc.aio.AioRpcError, target: str) -> str:
    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE and "no model" not in (error.details() or ""):
        return f"cannot reach mallrec at {target} ({error.details()}); is `mallrec serve` running?"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"mallrec at {target} did not answer in time"
    return f"{code.name.lower()}: {error.details()}"


class Client:
    def __init__(self, target: str, timeout: float = 5.0) -> None:
        self.target = target
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = pb_grpc.RecommenderStub(self.channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()

    async def recommend(self, member: str, slot: str, count: int = 10, query: str = "",
                        order_items: Sequence[str] = ()) -> pb.RecommendResponse:
        req = pb.RecommendRequest(member_id=member, slot=slot, count=count,
                                  context=pb.Context(query=query, order_item_ids=list(order_items)))
        return await self._call(self.stub.Recommend, req)

    async def page(self, member: str, slots: Sequence[tuple[str, int]], query: str = "",
                   order_items: Sequence[str] = ()) -> pb.RecommendPageResponse:
        req = pb.RecommendPageRequest(member_id=member,
                                      slots=[pb.SlotRequest(slot=s, count=c) for s, c in slots],
                                      context=pb.Context(query=query, order_item_ids=list(order_items)))
        return await self._call(self.stub.RecommendPage, req)

    async def track(self, events: Sequence[pb.Event]) -> pb.TrackEventsResponse:
        return await self._call(self.stub.TrackEvents, pb.TrackEventsRequest(events=list(events)))

    async def _call(self, method: Callable[..., Awaitable[Reply]], request: object) -> Reply:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            raise RpcFailed(describe_error(e, self.target)) from e


def slot_table(title: str, items: Sequence[pb.Item]) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("item", style="bold")
    table.add_column("score", justify="right")
    table.add_column("source", style="cyan")
    table.add_column("why")
    for n, item in enumerate(items, 1):
        why = "\n".join(f"[dim]{r.step}:[/] {r.detail}" for r in item.reasons)
        table.add_row(str(n), item.item_id, f"{item.score:.3f}", item.source, why)
    if not items:
        table.add_row("", "(nothing to show)", "", "", "")
    return table


def print_response(console: Console, member: str,
                   resp: pb.RecommendResponse | pb.RecommendPageResponse) -> None:
    """One table per slot, with the versions and the degraded flag underneath."""
    slots = [(resp.slot, resp.items)] if isinstance(resp, pb.RecommendResponse) else \
        [(s.slot, s.items) for s in resp.slots]
    for slot, items in slots:
        console.print(slot_table(f"{slot} for {member}", items))
    flag = "  [bold yellow]degraded: a part was skipped (online state or re-ranker)[/]" if resp.degraded else ""
    console.print(f"[dim]model {resp.model_version} · rules {resp.rules_version} · "
                  f"request {resp.request_id}[/]{flag}")
