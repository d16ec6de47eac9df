"""gRPC health check for the container's HEALTHCHECK (the grpc_health_probe binary, without the binary).

    python healthcheck.py [--addr 127.0.0.1:50051] [--service NAME] [--timeout 2]

Asks ``grpc.health.v1.Health/Check`` and exits 0 when the answer is SERVING, 1 otherwise (NOT_SERVING,
an unknown service name, nothing listening, a timeout), printing one line that says which. Service
names of `mallrec serve`: "" (the process; NOT_SERVING only while draining), "mallrec.v1.Recommender"
(NOT_SERVING until the first model bundle has loaded) and "mallrec.v1.EventIntake" (NOT_SERVING while
Redis is unreachable).

The defaults come from the environment where set: MALLREC_HEALTH_ADDR, else 127.0.0.1:$MALLREC_PORT
(50051); MALLREC_HEALTH_SERVICE (""). Only grpcio and grpcio-health-checking are imported, so a check
costs a fraction of a second of CPU, not the service's start-up imports.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(addr: str, service: str = "", timeout: float = 2.0) -> tuple[bool, str]:
    """(healthy, one line saying why) for ``service`` on the server at ``addr``."""
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as e:
            # a failed call's error is also a grpc.Call: code() and details() say what went wrong
            code, details = (e.code(), e.details()) if isinstance(e, grpc.Call) else (None, str(e))
            name = code.name if code else "ERROR"
            return False, f"{addr} service {service!r}: {name} {details or ''}".rstrip()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return resp.status == health_pb2.HealthCheckResponse.SERVING, f"{addr} service {service!r}: {status}"


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    default_addr = env.get("MALLREC_HEALTH_ADDR") or f"127.0.0.1:{env.get('MALLREC_PORT') or 50051}"
    p = argparse.ArgumentParser(description="Exit 0 when the gRPC health service answers SERVING.")
    p.add_argument("--addr", default=default_addr, help=f"host:port (default {default_addr})")
    p.add_argument("--service", default=env.get("MALLREC_HEALTH_SERVICE", ""),
                   help='health service name (default "": the whole server)')
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    args = p.parse_args(argv)
    ok, line = check(args.addr, args.service, args.timeout)
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
