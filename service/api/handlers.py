"""The Recommender's method handlers, registered like the generated ``add_RecommenderServicer_to_server``
but with request decoders that never raise.

A body that is not a valid message makes grpc's own decoder raise inside the framework: the caller
gets UNKNOWN and the server logs a full traceback for every such request (a fuzzer produces
thousands). Here the decoder returns ``Undecodable`` instead, and the servicer answers
INVALID_ARGUMENT, counts it and logs it rate-limited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError, Message

from service.api.gen.mallrec.v1 import recommender_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Recommender"]


@dataclass(frozen=True)
class Undecodable:
    """A request body that did not decode as the method's message."""

    message_type: str
    error: str


def _decoder(message: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    name = message.DESCRIPTOR.full_name

    def decode(data: bytes) -> Message | Undecodable:
        try:
            return message.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as e:  # RuntimeError: recursion limits in upb
            return Undecodable(name, str(e)[:200])

    return decode


def add_to_server(servicer: object, server: grpc.aio.Server) -> None:
    handlers = {}
    for method in SERVICE.methods:
        request = getattr(pb, method.input_type.name)
        response = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name), request_deserializer=_decoder(request),
            response_serializer=response.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
