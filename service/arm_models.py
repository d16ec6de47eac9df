"""Bundle versions that experiment arms serve beside the live model (``model = "<version>"`` in an
arm): loaded in a thread when the rules name them, dropped when no rules name them any more. Each
costs about as much memory as the live model. A version that fails to load is logged and counted
once; until the rules change, its arm's members are served by the live model, marked degraded
("arm_model").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from service.model import ServingModel
from service.model_bundle import VERSIONS_DIR, BundleError
from service.reload import beside_serving

log = logging.getLogger(__name__)


class ArmModels:
    def __init__(self, models_dir: Path, loader: Callable[[Path], ServingModel],
                 on_failed: Callable[[str, Exception], Awaitable[None]] | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.loader = loader
        self.on_failed = on_failed
        self.loaded: dict[str, ServingModel] = {}
        self.failed: set[str] = set()

    def get(self, version: str) -> ServingModel | None:
        return self.loaded.get(version)

    async def want(self, versions: set[str]) -> None:
        """Hold exactly ``versions``: load the missing ones, drop the others."""
        for v in [v for v in self.loaded if v not in versions]:
            del self.loaded[v]
            log.info("experiment model dropped", extra={"version": v})
        self.failed &= versions  # a version named again later is tried again
        for v in sorted(versions - self.loaded.keys() - self.failed):
            try:
                # as the bundle watcher loads: requests keep moving beside it
                model = await beside_serving(self.loader, self.models_dir / VERSIONS_DIR / v)
                if model.version != v:
                    raise BundleError(f"{self.models_dir / VERSIONS_DIR / v}: the manifest says version "
                                      f"{model.version!r}")
            except Exception as e:  # a bad bundle must not stop the rules from going live
                self.failed.add(v)
                log.error("experiment model could not be loaded: its arm is served by the live model",
                          extra={"version": v, "error": f"{type(e).__name__}: {e}"})
                if self.on_failed is not None:
                    await self.on_failed(v, e)
                continue
            self.loaded[v] = model
            log.info("experiment model loaded", extra={"version": v})
