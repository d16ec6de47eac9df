"""Hot reload: notice a newly published bundle or a changed rules file, build the new one beside
the old one, swap atomically.

The bundle watcher polls MODELS_DIR/CURRENT (a one-line file; publish replaces it atomically); the
rules watcher polls the rules file's mtime and size, then its content hash. A new version loads in
a worker thread while the old one keeps serving; the swap is one attribute assignment, and a
request reads ``holder.current`` once, so it never sees half of two. A bundle or rules file that
fails (any error loading a bundle; a RulesError, or a rules file refused as a probably truncated
save) is logged once, counted and remembered (not retried until CURRENT or the file changes), and
the old one stays.

A bundle loads `beside_serving`: on a thread of its own at a lower CPU priority (Linux: nice +10
for that thread only), so where cores are short the scheduler runs the event loop first and the
load takes the spare time; and the interpreter hands the GIL over every 0.5 ms instead of every
5 ms (`sharing_the_gil`), so the loader's Python-level steps stall the event loop for shorter
slices (load_tests/bench_swap_stall.py measures them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from service.errors import MallrecError
from service.model import ServingModel
from service.model_bundle import CURRENT_FILE, VERSION_PATTERN, VERSIONS_DIR, BundleError, current_version

if TYPE_CHECKING:
    from service.rules.loader import LoadedRules
    from service.slots import SlotRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")


#: GIL switch interval while a bundle loads beside the serving event loop (Python's default: 5 ms).
LOAD_SWITCH_INTERVAL = 0.0005


class _Sharing:
    """Who is sharing the GIL now: the interval goes back only when the last of them ends, whatever
    order they end in (a bundle load and the sink's compaction may overlap)."""

    lock = threading.Lock()
    count = 0
    before = 0.005


@contextmanager
def sharing_the_gil(interval: float = LOAD_SWITCH_INTERVAL) -> Iterator[None]:
    """Let other threads (the event loop) take the GIL more often for the duration."""
    with _Sharing.lock:
        if _Sharing.count == 0:
            _Sharing.before = sys.getswitchinterval()
        _Sharing.count += 1
        sys.setswitchinterval(min(interval, sys.getswitchinterval()))
    try:
        yield
    finally:
        with _Sharing.lock:
            _Sharing.count -= 1
            if _Sharing.count == 0:
                sys.setswitchinterval(_Sharing.before)


#: How much lower the loader thread's CPU priority is than the server's (a nice increment).
LOAD_NICE = 10


async def beside_serving(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on a fresh thread at a lower CPU priority, sharing the GIL more often.

    A fresh thread, not the default executor's: a thread cannot raise its priority back without
    privileges, and a pooled one would carry the lower priority into unrelated work."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        _lower_priority(LOAD_NICE)
        try:
            result: T | None = fn(*args)
            error: BaseException | None = None
        except BaseException as e:  # handed to the awaiting coroutine, which decides
            result, error = None, e
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown): nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    with sharing_the_gil():
        threading.Thread(target=work, name="mallrec-load", daemon=True).start()
        return await done


def _lower_priority(increment: int) -> None:
    """Lower the calling thread's CPU priority (Linux's setpriority takes a thread id; elsewhere it
    would take the whole process, so nothing is done there)."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + increment, 19))
    except OSError as e:  # a sandbox that forbids it: load at the normal priority
        log.debug("loader priority not lowered", extra={"error": str(e)})


class Holder(Generic[T]):
    """The one live object of its kind (model, slot registry); replaced whole, never mutated."""

    def __init__(self, current: T | None = None) -> None:
        self.current = current

    def swap(self, new: T) -> T | None:
        old, self.current = self.current, new
        return old


class Poller:
    """Calls ``check()`` every ``interval`` seconds in a task until stopped; a failing check is logged."""

    interval: float = 1.0
    _task: asyncio.Task[None] | None = None

    async def check(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll(), name=type(self).__name__)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # a watcher that dies silently would freeze what it watches: log, go on
                log.exception("watcher check failed", extra={"watcher": type(self).__name__})


class BundleWatcher(Poller):
    def __init__(self, models_dir: str | Path, holder: Holder[ServingModel], *, interval: float = 1.0,
                 loader: Callable[[Path], ServingModel] = ServingModel.load,
                 on_loaded: Callable[[ServingModel], Awaitable[None]] | None = None,
                 on_failed: Callable[[str, Exception], Awaitable[None]] | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.holder = holder
        self.interval = interval
        self.loader = loader
        self.on_loaded = on_loaded
        self.on_failed = on_failed
        self.rejected: str | None = None  # last version that failed: not retried until CURRENT moves

    async def check(self) -> bool:
        """Load CURRENT if it names a version we do not serve yet; True when a new model went live.

        A version that fails, for whatever reason, is rejected once: logged with its reason,
        counted through ``on_failed``, and not tried again until CURRENT names another version."""
        version = current_version(self.models_dir)
        live = self.holder.current
        if version is None or version == self.rejected or (live is not None and live.version == version):
            return False
        try:
            if not re.fullmatch(VERSION_PATTERN, version):  # never a path out of versions/
                raise BundleError(f"{self.models_dir / CURRENT_FILE} names {version!r}, not a version")
            model = await beside_serving(self.loader, self.models_dir / VERSIONS_DIR / version)
            if model.version != version:  # a loader that does not check the folder name itself
                raise BundleError(f"{self.models_dir / VERSIONS_DIR / version}: the manifest says version "
                                  f"{model.version!r}, {CURRENT_FILE} names {version!r}")
        except Exception as e:  # a bundle that cannot load is rejected, whatever the error
            await self._reject(version, e)
            return False
        self.holder.swap(model)
        self.rejected = None
        log.info("model bundle live", extra={"version": model.version,
                                             "previous": live.version if live else None})
        if self.on_loaded is not None:
            await self.on_loaded(model)
        return True

    async def _reject(self, version: str, error: Exception) -> None:
        """Remember, log once (a traceback only for an error that is not a known bad bundle), count."""
        self.rejected = version
        live = self.holder.current
        known = isinstance(error, BundleError)
        log.error("rejected model bundle, still serving the previous one",
                  exc_info=None if known else error,
                  extra={"version": version, "serving": live.version if live else None,
                         "error": str(error) if known else f"{type(error).__name__}: {error}"})
        if self.on_failed is not None:
            await self.on_failed(version, error)


class RecentlyServed:
    """The slots that served a request within the last ``window`` seconds: what the rules watcher's
    ``recently_served`` asks. Call ``note(slot)`` for each slot a response served (known slots only,
    so the table stays as small as the registry)."""

    def __init__(self, window: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._last: dict[str, float] = {}

    def note(self, slot: str) -> None:
        self._last[slot] = self.clock()

    def __call__(self) -> list[str]:
        since = self.clock() - self.window
        return sorted(slot for slot, at in self._last.items() if at >= since)


class RulesWatcher(Poller):
    """Rebuilds the slot registry when the rules file's content changes (``load`` raises MallrecError
    for a file that cannot serve: every problem is logged, and the last good rules keep serving).

    A valid file that would drop every rule and file-defined slot, or a slot named by
    ``recently_served`` (the slots that served requests in the last hour, as the service counts
    them), is refused as a probably truncated save (service/rules/guard.py) unless it says
    ``allow_removing_slots = true``; ``on_failed`` gets a ``RemovalRefused`` then."""

    def __init__(self, path: str | Path, holder: Holder[SlotRegistry], load: Callable[[Path], LoadedRules],
                 *, interval: float = 1.0, digest: str | None = None,
                 on_loaded: Callable[[LoadedRules], Awaitable[None]] | None = None,
                 on_failed: Callable[[Exception], Awaitable[None]] | None = None,
                 recently_served: Callable[[], Collection[str]] = lambda: ()) -> None:
        self.path = Path(path)
        self.holder = holder
        self.load = load
        self.interval = interval
        self.on_loaded = on_loaded
        self.on_failed = on_failed
        self.recently_served = recently_served
        self.digest = digest  # content hash of the rules serving now
        self.rejected: str | None = None  # content hash of the last file that failed
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) last looked at

    async def check(self) -> bool:
        """True when new rules went live."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._seen:
                return False
            data = await asyncio.to_thread(self.path.read_bytes)
        except OSError as e:
            if self._seen != (-1, -1):
                self._seen = (-1, -1)
                await self._failed(MallrecError(f"{self.path}: cannot read the rules file ({e.strerror})"))
            return False
        self._seen = stamp
        digest = hashlib.sha256(data).hexdigest()
        if digest in (self.digest, self.rejected):
            return False
        from service.rules.guard import refuse_removal

        try:
            loaded = await asyncio.to_thread(self.load, self.path)
            refuse_removal(str(self.path), self.holder.current, loaded.registry, self._served())
        except MallrecError as e:
            self.rejected = digest
            await self._failed(e)
            return False
        old = self.holder.swap(loaded.registry)
        self.digest, self.rejected = loaded.digest, None
        removed = sorted(set(old.names()) - set(loaded.registry.names())) if old else []
        log.info("rules live", extra={"rules_version": loaded.registry.version,
                                      "previous": old.version if old else None, "removed_slots": removed,
                                      "warnings": [p.format() for p in loaded.problems]})
        if self.on_loaded is not None:
            await self.on_loaded(loaded)
        return True

    def _served(self) -> Collection[str]:
        try:
            return self.recently_served()
        except Exception:  # the guard then protects what it can (everything removed) and says so
            log.warning("cannot tell which slots served lately", exc_info=True)
            return ()

    async def _failed(self, error: Exception) -> None:
        live = self.holder.current
        log.error("rejected rules file, still serving the previous rules",
                  extra={"path": str(self.path), "error": str(error),
                         "serving": live.version if live else None})
        if self.on_failed is not None:
            await self.on_failed(error)
