"""Hot reload: notice a newly published bundle, load it beside the old one, swap atomically.

The watcher polls MODELS_DIR/CURRENT (a one-line file; publish replaces it atomically). A new
version loads in a worker thread while the old model keeps serving; the swap is one attribute
assignment, and a request reads ``holder.current`` once, so it never sees half of two models. A
bundle that fails to load (BundleError) is logged, counted and remembered, and the old one stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

from service.model import ServingModel
from service.model_bundle import VERSIONS_DIR, BundleError, current_version

log = logging.getLogger(__name__)
T = TypeVar("T")


class Holder(Generic[T]):
    """The one live object of its kind (model, slot registry); replaced whole, never mutated."""

    def __init__(self, current: T | None = None) -> None:
        self.current = current

    def swap(self, new: T) -> T | None:
        old, self.current = self.current, new
        return old


class BundleWatcher:
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
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> bool:
        """Load CURRENT if it names a version we do not serve yet; True when a new model went live."""
        version = current_version(self.models_dir)
        live = self.holder.current
        if version is None or version == self.rejected or (live is not None and live.version == version):
            return False
        try:
            model = await asyncio.to_thread(self.loader, self.models_dir / VERSIONS_DIR / version)
        except BundleError as e:
            self.rejected = version
            log.error("rejected model bundle, still serving the previous one",
                      extra={"version": version, "error": str(e),
                             "serving": live.version if live else None})
            if self.on_failed is not None:
                await self.on_failed(version, e)
            return False
        self.holder.swap(model)
        self.rejected = None
        log.info("model bundle live", extra={"version": model.version,
                                             "previous": live.version if live else None})
        if self.on_loaded is not None:
            await self.on_loaded(model)
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll(), name="bundle-watcher")

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
            except Exception:  # a watcher that dies silently would freeze the model: log and go on
                log.exception("bundle watcher check failed")
