"""The data loop as an operator runs it, with real processes and a real redis-server with AOF:

    `serve --log` (sink in-process) -> Recommend + TrackEvents -> kill -9 the server mid-run
    -> `serve` again beside `mallrec sink` -> kill -9 the sink mid-run -> start it again
    -> SIGTERM both -> every acknowledged event and every served item in the Parquet log exactly once
    -> `mallrec report` counts what was sent and served -> `mallrec train --events LOG_DIR` -> it serves.

The server is killed only after its last answer was out for 50 ms: served items are written to Redis
behind the answer (within ~5 ms), so a kill -9 inside that moment may lose the last page's served
records. Acknowledged TrackEvents are in Redis before the OK, so no kill loses them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.api.gen.mallrec.v1 import recommender_pb2_grpc as pb_grpc
from service.eventlog.schema import read_log
from service.model_bundle import current_version
from tests.e2e.conftest import mallrec, train
from tests.fixtures.redis_server import RedisProcess, free_port

pytestmark = pytest.mark.e2e
SERVING = health_pb2.HealthCheckResponse.SERVING


class Proc:
    """A `mallrec` command in its own process."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def term(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0, self.proc.stderr.read() if self.proc.stderr else ""


def wait_serving(target: str, proc: Proc) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.proc.poll() is None, proc.proc.stderr.read() if proc.proc.stderr else ""
        try:
            with grpc.insecure_channel(target) as ch:
                if health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                        timeout=0.5).status == SERVING:
                    return
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, "server never became SERVING"
        time.sleep(0.1)


class Shop:
    """The frontend: asks for check-in slots, clicks the first item (with the request id) and buys the
    second (without: attributed by time), remembering everything the server acknowledged."""

    def __init__(self, members: list[str]) -> None:
        self.members = members
        self.served: list[tuple[str, str, str]] = []  # (request_id, member, item)
        self.acked: list[tuple[str, str, str]] = []  # (event, member, item)
        self.turn = 0

    def visit(self, target: str, n: int) -> None:
        with grpc.insecure_channel(target) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            for _ in range(n):
                member = self.members[self.turn % len(self.members)]
                request_id = f"req-{self.turn}"
                self.turn += 1
                resp = stub.Recommend(pb.RecommendRequest(member_id=member, slot="check_in", count=4,
                                                          request_id=request_id), timeout=10)
                items = [i.item_id for i in resp.items]
                self.served += [(request_id, member, i) for i in items]
                events = [pb.Event(member_id=member, item_id=items[0], event="click", slot="check_in",
                                   request_id=request_id, event_id=f"click-{request_id}"),
                          pb.Event(member_id=member, item_id=items[1], event="purchase", quantity=2,
                                   ts=int(time.time()))]
                ack = stub.TrackEvents(pb.TrackEventsRequest(events=events), timeout=10)
                assert ack.new_events == 2
                self.acked += [("click", member, items[0]), ("purchase", member, items[1])]
        time.sleep(0.05)  # the last page's served records are written behind the answer


def test_the_loop_survives_kills_and_counts_everything_once(data_dir: Path, tmp_path: Path) -> None:
    models, log = tmp_path / "models", tmp_path / "log"
    first_version = train(data_dir, models)
    port = free_port()
    target = f"127.0.0.1:{port}"
    members = [str(5_000_001 + k) for k in range(40)]  # the synthetic mall's member ids
    shop = Shop(members)
    with RedisProcess(aof=True) as redis_server:
        env = {**os.environ, "MALLREC_DRAIN_SECONDS": "0", "MALLREC_SINK_LOCK_SECONDS": "1"}
        serve_args = ("serve", "--models", str(models), "--port", str(port), "--host", "127.0.0.1",
                      "--redis-url", redis_server.url)
        server = Proc(*serve_args, "--log", str(log), env=env)
        wait_serving(target, server)
        shop.visit(target, 15)
        server.kill9()  # mid-run: its in-process sink may hold a batch it has not written

        server = Proc(*serve_args, env=env)  # several replicas would run like this, beside one sink
        sink = Proc("sink", "--redis-url", redis_server.url, "--log", str(log), "--flush-seconds", "0.2",
                    "--lock-seconds", "1", env=env)
        wait_serving(target, server)
        shop.visit(target, 15)
        sink.kill9()
        shop.visit(target, 10)
        sink = Proc("sink", "--redis-url", redis_server.url, "--log", str(log), "--flush-seconds", "0.2",
                    "--lock-seconds", "1", env=env)
        shop.visit(target, 10)
        server.term()
        deadline = time.monotonic() + 30
        while read_log(log, columns=["event_id"]).num_rows < len(shop.served) + len(shop.acked):
            assert time.monotonic() < deadline, "the sink did not catch up"
            time.sleep(0.2)
        sink.term()

        logged = read_log(log).to_pylist()
        assert len({r["event_id"] for r in logged}) == len(logged), "no record twice"
        served = sorted((r["request_id"], r["member_id"], r["item_id"])
                        for r in logged if r["event"] == "served")
        assert served == sorted(shop.served)
        behaviour = sorted((r["event"], r["member_id"], r["item_id"])
                           for r in logged if r["event"] != "served")
        assert behaviour == sorted(shop.acked)

        out = tmp_path / "report.json"
        mallrec("report", "--log", str(log), "--items", str(data_dir / "items.csv"), "--since", "1d",
                "--json", str(out))
        rows = {r["slot"]: r for r in json.loads(out.read_text())["rows"]}
        visits = shop.turn
        assert rows["check_in"]["impressions"] == len(shop.served) == 4 * visits
        assert rows["check_in"]["clicks"] == visits
        assert rows["check_in"]["purchases"] == visits  # bought items were served to the buyer just before

        mallrec("train", "--events", str(log), "--items", str(data_dir / "items.csv"), "--out", str(models))
        new_version = current_version(models)
        assert new_version and new_version != first_version
        server = Proc(*serve_args, env=env)
        try:
            wait_serving(target, server)
            with grpc.insecure_channel(target) as ch:
                resp = pb_grpc.RecommenderStub(ch).Recommend(
                    pb.RecommendRequest(member_id=members[0], slot="check_in", count=4), timeout=10)
            assert resp.model_version == new_version and resp.items
        finally:
            server.term()


def test_sigterm_of_serve_with_log_leaves_every_record_in_parquet(tmp_path: Path) -> None:
    """A deploy stops the server with SIGTERM: once the process has exited, the log holds everything
    it served and acknowledged (no sink left running elsewhere, nothing in Redis to wait for)."""
    from tests.fixtures.tiny_bundle import publish_tiny

    models, log = tmp_path / "models", tmp_path / "log"
    publish_tiny(models)
    port = free_port()
    target = f"127.0.0.1:{port}"
    with RedisProcess(aof=True) as redis_server:
        env = {**os.environ, "MALLREC_DRAIN_SECONDS": "0"}  # the sink's own 5 s batch wait is not cut short
        server = Proc("serve", "--models", str(models), "--port", str(port), "--host", "127.0.0.1",
                      "--redis-url", redis_server.url, "--log", str(log), env=env)
        wait_serving(target, server)
        shop = Shop([f"m{k:03d}" for k in range(1, 11)])
        shop.visit(target, 10)
        server.term()
        logged = read_log(log).to_pylist()
    assert sorted((r["request_id"], r["member_id"], r["item_id"]) for r in logged if r["event"] == "served") \
        == sorted(shop.served)
    assert sorted((r["event"], r["member_id"], r["item_id"]) for r in logged if r["event"] != "served") \
        == sorted(shop.acked)
