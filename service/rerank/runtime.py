"""A bundle's re-ranker ready to serve: the feature context and the onnxruntime session, built once.

    runtime = rerank_runtime(model)      # in the reload thread, right after the ServingModel is built
    runtime.ready                        # True: scores can be asked for
    runtime.problem                      # why not, when the bundle ships a re-ranker that cannot load

The serving side keeps one runtime per ServingModel (weakly: it goes with its model). The server's
bundle loader (``service.app.load_model``) builds it in the reload thread, so the first request never
pays for it; anything else that makes a ServingModel (rules preview, rules check, tests) gets it built
on first use. A bundle without ``reranker.onnx`` is not an error (``absent``): it was trained without
one. A bundle whose model cannot load (bad bytes, another feature list, a failing feature context)
serves on, with every re-ranked slot falling back to its first-stage order, marked degraded.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from service.rerank.features import FeatureContext
from service.rerank.scorer import Reranker

log = logging.getLogger(__name__)
_MAX_LOGGED = 20  # distinct scoring failures logged per bundle (the rest are only counted)


@dataclass
class RerankRuntime:
    version: str
    ctx: FeatureContext | None = None
    scorer: Reranker | None = None
    problem: str | None = None  # the bundle has a re-ranker that cannot serve, and why
    absent: str | None = None  # the bundle has no re-ranker, and why (not an error)
    _logged: set[str] = field(default_factory=set)

    @property
    def ready(self) -> bool:
        return self.scorer is not None and self.ctx is not None

    @classmethod
    def load(cls, bundle: Any) -> RerankRuntime:
        version = str(bundle.version)
        if bundle.reranker_onnx is None:
            skipped = (bundle.manifest.get("reranker") or {}).get("skipped")
            why = f"model {version} has no re-ranker" + (f" ({skipped})" if skipped else "")
            return cls(version, absent=why)
        try:
            scorer = Reranker.from_bundle(bundle)
            ctx = FeatureContext.from_bundle(bundle)
        except Exception as e:  # RerankError, or anything the feature context trips on
            why = f"the re-ranker of model {version} cannot serve: {type(e).__name__}: {e}"
            log.error("re-ranker not loaded: re-ranked slots fall back to the first-stage order",
                      extra={"version": version, "error": why})
            return cls(version, problem=why)
        log.info("re-ranker ready", extra={"version": version})
        return cls(version, ctx=ctx, scorer=scorer)

    def failed(self, why: str) -> None:
        """Log a scoring failure once per distinct reason (a broken model would fail every request)."""
        if why not in self._logged and len(self._logged) < _MAX_LOGGED:
            self._logged.add(why)
            log.error("re-ranker failed: slot served in first-stage order (degraded)",
                      extra={"version": self.version, "error": why})


_RUNTIMES: WeakKeyDictionary[Any, RerankRuntime] = WeakKeyDictionary()
_LOCK = threading.Lock()


def rerank_runtime(model: Any) -> RerankRuntime:
    """The re-ranker of a ``ServingModel``, built on the first call for that model (then kept with it).

    Built outside the lock, so requests on the live model never wait for a new bundle's build."""
    with _LOCK:
        runtime = _RUNTIMES.get(model)
    if runtime is not None:
        return runtime
    built = RerankRuntime.load(model.bundle)
    with _LOCK:
        return _RUNTIMES.setdefault(model, built)
