"""A bare gRPC server on the same stack as mallrec (grpc.aio, the same generated stubs), doing nothing.

It serves the ``mallrec.v1.Recommender`` service with trivial methods (echo the slot and request id,
accept the events), so the load generator drives it with exactly the requests it sends mallrec: its
numbers are what Python gRPC itself can do on this machine, the ceiling every mallrec figure is
divided by.

    python -m load_tests.echo_server --port 50061 [--reuse-port]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc

ECHO_VERSION = "echo"


class EchoServicer(pb_grpc.RecommenderServicer):
    async def Recommend(self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext
                        ) -> pb.RecommendResponse:
        return pb.RecommendResponse(slot=request.slot, request_id=request.request_id,
                                    model_version=ECHO_VERSION)

    async def RecommendPage(self, request: pb.RecommendPageRequest, context: grpc.aio.ServicerContext
                            ) -> pb.RecommendPageResponse:
        return pb.RecommendPageResponse(slots=[pb.SlotItems(slot=s.slot) for s in request.slots],
                                        request_id=request.request_id, model_version=ECHO_VERSION)

    async def SimilarItems(self, request: pb.SimilarItemsRequest, context: grpc.aio.ServicerContext
                           ) -> pb.SimilarItemsResponse:
        return pb.SimilarItemsResponse(model_version=ECHO_VERSION)

    async def TrackEvents(self, request: pb.TrackEventsRequest, context: grpc.aio.ServicerContext
                          ) -> pb.TrackEventsResponse:
        return pb.TrackEventsResponse(accepted=len(request.events))


async def serve(host: str, port: int, reuse_port: bool = False, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", int(reuse_port))])
    pb_grpc.add_RecommenderServicer_to_server(EchoServicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"echo serving on {host}:{bound}", flush=True)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.port = bound  # type: ignore[attr-defined]
        ready.set()
    await stop.wait()
    await server.stop(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=50061)
    ap.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT (several processes, one port)")
    args = ap.parse_args()
    asyncio.run(serve(args.host, args.port, args.reuse_port))


if __name__ == "__main__":
    main()
