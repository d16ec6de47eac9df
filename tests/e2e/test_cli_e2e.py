"""The commands as a user runs them: `mallrec serve` (SIGTERM = graceful), `recommend`, `demo`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from service.cli import app as cli_app
from service.eventlog.schema import read_log
from tests.fixtures.redis_server import delete_prefix, free_port, shared_url, unique_prefix
from tests.fixtures.tiny_bundle import publish_tiny

pytestmark = pytest.mark.e2e
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(target: str) -> int | None:
    try:
        with grpc.insecure_channel(target) as ch:
            return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5).status
    except grpc.RpcError:
        return None


def test_serve_answers_then_drains_on_sigterm(tmp_path: Path) -> None:
    publish_tiny(tmp_path / "models")
    url, prefix = shared_url(), unique_prefix()
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = {**os.environ, "MALLREC_DRAIN_SECONDS": "1", "MALLREC_REDIS_PREFIX": prefix, "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--models",
                             str(tmp_path / "models"), "--port", str(port), "--host", "127.0.0.1",
                             "--redis-url", url],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while health(target) != SERVING:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "server never became SERVING"
            time.sleep(0.1)
        one = CliRunner().invoke(cli_app, ["recommend", "--target", target, "--member", "m001",
                                           "--slot", "delivery", "--order-items", "i012", "--count", "3"])
        assert one.exit_code == 0, one.output
        assert "delivery for m001" in one.output and "similar_order" in one.output
        page = CliRunner().invoke(cli_app, ["recommend", "--target", target, "--member", "m001", "--page"])
        assert page.exit_code == 0 and all(s in page.output for s in ("search_box", "check_in", "delivery"))

        proc.send_signal(signal.SIGTERM)
        seen = set()
        while proc.poll() is None and time.monotonic() < deadline:
            seen.add(health(target))
            time.sleep(0.05)
        assert NOT_SERVING in seen, "health must say NOT_SERVING while draining"
        assert proc.wait(10) == 0
        logs = proc.stderr.read() if proc.stderr else ""
        assert '"msg": "mallrec stopped"' in logs
    finally:
        if proc.poll() is None:
            proc.kill()
        delete_prefix(url, prefix)


def test_demo_trains_serves_with_embedded_redis_and_shows_the_slots(tmp_path: Path) -> None:
    data = tmp_path / "mall"
    CliRunner().invoke(cli_app, ["synth", "--members", "200", "--items", "150", "--events", "4000",
                                 "--out", str(data)], catch_exceptions=False)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "service.cli", "demo", "--data", str(data), "--models",
                           str(tmp_path / "models"), "--port", str(free_port()), "--once"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for text in ("published", "search_box for", "check_in for", "delivery for", "one page for",
                 "new-member-001"):
        assert text in done.stdout, text
    assert "degraded" not in done.stdout  # the embedded Redis answered
    served = read_log(tmp_path / "log", columns=["event"]).column("event").to_pylist()
    assert served and set(served) == {"served"}, "the demo's event log holds what it served"
    assert list((tmp_path / "redis").glob("**/*.aof*")), "the embedded Redis keeps an append-only file"


def test_serve_workers_share_one_port_and_stop_together(tmp_path: Path) -> None:
    import psutil

    publish_tiny(tmp_path / "models")
    url, prefix = shared_url(), unique_prefix()
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = {**os.environ, "MALLREC_DRAIN_SECONDS": "0", "MALLREC_REDIS_PREFIX": prefix}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--models",
                             str(tmp_path / "models"), "--port", str(port), "--redis-url", url,
                             "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while health(target) != SERVING:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "workers never became SERVING"
            time.sleep(0.1)
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
        delete_prefix(url, prefix)
