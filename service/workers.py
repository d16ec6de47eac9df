"""`mallrec serve --workers N`: N server processes on one port (SO_REUSEPORT), behind one command.

One Python process serves on one core (the GIL); the kernel spreads connections across processes
that share a port. The parent validates the settings once, starts the embedded Redis when there is
no Redis URL (so every worker shares one online state), hands each worker its settings through the
environment (``MALLREC_<FIELD>``), forwards SIGTERM / SIGINT and waits for all of them. A worker
that dies on its own stops the others and the command exits non-zero, so the platform restarts it
whole instead of running on short capacity unnoticed. Worker k's metrics, if any, are on
``metrics_port + k``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from service.errors import MallrecError
from service.settings import ENV_NAMES, Settings
from service.state.embedded import EmbeddedRedis

log = logging.getLogger(__name__)


def worker_env(settings: Settings, k: int) -> dict[str, str]:
    """The environment that makes ``mallrec serve`` in a child load ``settings`` as worker ``k``."""
    env = dict(os.environ)
    values = settings.model_dump()
    values["reuse_port"] = True
    if settings.metrics_port is not None:
        values["metrics_port"] = settings.metrics_port + k
    for name, value in values.items():
        key = ENV_NAMES.get(name, f"MALLREC_{name.upper()}")
        if value is None:
            env.pop(key, None)
        else:
            env[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return env


def run_workers(settings: Settings, n: int) -> int:
    """Serve with ``n`` processes until SIGTERM / SIGINT; the exit status (0 when all stopped cleanly)."""
    if settings.port == 0:
        raise MallrecError("--workers needs a fixed --port: the workers share it")
    embedded = None
    if settings.redis_url is None:
        embedded = EmbeddedRedis(settings.embedded_redis_file)
        settings = settings.model_copy(update={"redis_url": embedded.url})
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    cmd = [sys.executable, "-m", "service.cli", "serve", "--models", str(Path(settings.models_dir))]
    procs: list[subprocess.Popen[bytes]] = []
    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}  # before any worker starts
    for k in range(n):
        if not stopping:
            procs.append(subprocess.Popen(cmd, env=worker_env(settings, k)))
    log.info("mallrec workers started", extra={"workers": n, "pids": [p.pid for p in procs],
                                               "address": f"{settings.host}:{settings.port}"})
    try:
        while any(p.poll() is None for p in procs):
            died = [p for p in procs if p.poll() is not None]
            if died and not stopping:
                log.error("a worker exited on its own: stopping the others",
                          extra={"pid": died[0].pid, "exit": died[0].returncode})
                stop(signal.SIGTERM, None)
            time.sleep(0.1)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if embedded is not None:
            embedded.close()
    # a worker stopped before it took its signal handlers (still starting) ends by the signal itself
    codes = [0 if c == -signal.SIGTERM else c for c in (p.returncode for p in procs)]
    return 0 if stopping and all(c == 0 for c in codes) else max(1, *codes)
