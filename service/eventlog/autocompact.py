"""The sink's own compaction: once a UTC day ends, its many small part files become one file, so no
one needs to schedule `mallrec log compact`.

The working sink (the lock holder) starts a pass when it becomes the sink and whenever the UTC day
changes after that. A pass is ``compact.compact_log`` over the closed days that still hold more than
one part or an interrupted compaction's leftovers (``compact.needs_compacting``): the same code,
lock and crash safety as the command. It runs as a task the sink's loop does not await, its work on a
thread of its own at a lower CPU priority (``reload.beside_serving``), so neither the sink nor a
server it runs beside waits for it.

A day that fails (a part that does not read, the lock held by a `mallrec log compact` run) is logged
and counted, and retried by the next day's pass, never at once. On stop, a pass finishes the day it
is on and skips the rest; the sink waits a bounded time for that and then leaves it behind: an
interrupted compaction loses nothing and the next pass finishes it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter

from service.eventlog.compact import compact_log
from service.eventlog.schema import day
from service.reload import beside_serving

log = logging.getLogger(__name__)


class DailyCompaction:
    def __init__(self, log_dir: Path, failures: Counter, clock: Callable[[], float] = time.time) -> None:
        self.log_dir = log_dir
        self.failures = failures
        self.clock = clock
        self.task: asyncio.Task[None] | None = None
        self._passed_on: str | None = None  # the UTC day the last pass started on
        self._halt = threading.Event()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def poll(self) -> None:
        """Start a pass when none ran yet or the UTC day changed since the last one started (and none
        is running). Cheap: the sink calls it before each read while it holds the lock."""
        now = self.clock()
        today = day(now)
        if today == self._passed_on or self.running:
            return
        self._passed_on = today
        self._halt.clear()
        self.task = asyncio.get_running_loop().create_task(self._run(now))

    def halt(self) -> None:
        """Ask a running pass to stop after the day it is on."""
        self._halt.set()

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a running pass; True once none runs."""
        if self.task is not None and not self.task.done():
            await asyncio.wait({self.task}, timeout=seconds)
        return not self.running

    def abandon(self) -> None:
        """Stop waiting for a pass (its thread finishes the day it is on by itself, or dies with the
        process: either is safe)."""
        if self.task is not None and not self.task.done():
            log.warning("event-log compaction still running at stop: left behind (crash-safe; the next "
                        "pass finishes it)", extra={"log_dir": str(self.log_dir)})
            self.task.cancel()

    async def _run(self, now: float) -> None:
        try:
            await beside_serving(self._pass, now)
        except Exception as e:  # the sink keeps writing whatever compaction meets
            self.failures.inc()
            log.error("event-log compaction failed: retried after the next UTC day change",
                      extra={"date": "all closed days", "error": f"{type(e).__name__}: {e}"})

    def _pass(self, now: float) -> None:
        """On the worker thread: each closed day that needs it, until halted."""
        results = compact_log(self.log_dir, now=now, untidy_only=True)
        try:
            for r in results:
                if r.error:
                    self.failures.inc()
                    log.error("event-log compaction failed for a day: retried after the next UTC day "
                              "change", extra={"date": r.date, "error": r.error})
                elif r.changed:
                    log.info("event-log day compacted", extra={
                        "date": r.date, "files_before": r.files_before, "files_after": r.files_after,
                        "rows": r.rows, "leftovers_deleted": r.leftovers, "pending_parts": r.pending})
                if self._halt.is_set():
                    break
        finally:
            results.close()  # releases the compaction lock
