"""The re-ranker at serving time: an onnxruntime session over the bundle's ``reranker.onnx``.

    scorer = Reranker.from_bundle(bundle)      # None when the bundle has no re-ranker
    scores = scorer.score(compute(ctx, member, batch))   # one call per slot, higher = better
    order = np.argsort(-scores, kind="stable")

Every failure (bad bytes, a model trained on another feature list, a wrong input shape, an error
inside onnxruntime) raises :class:`RerankError`, so the slot pipeline catches one type, serves the
first-stage order and marks the response ``degraded``. The session is single-threaded: one request
scores ~200 rows, where thread hand-offs cost more than they save.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.errors import MallrecError
from service.rerank.features import FEATURE_NAMES, FEATURE_VERSION


class RerankError(MallrecError):
    """The re-ranker cannot score: the caller falls back to the first-stage order."""


class Reranker:
    """A loaded ONNX ranking model that takes float32 [n, len(FEATURE_NAMES)] and returns [n]."""

    def __init__(self, onnx_bytes: bytes, feature_names: Sequence[str], feature_version: int) -> None:
        if tuple(feature_names) != FEATURE_NAMES or int(feature_version) != FEATURE_VERSION:
            missing = [n for n in FEATURE_NAMES if n not in feature_names]
            extra = [n for n in feature_names if n not in FEATURE_NAMES]
            raise RerankError(
                f"re-ranker was trained on feature list v{feature_version} ({len(feature_names)} "
                f"features), this code computes v{FEATURE_VERSION} ({len(FEATURE_NAMES)}); "
                f"missing {missing[:5]}, unknown {extra[:5]}: retrain the bundle")
        try:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for bad bytes and bad graphs
            raise RerankError(f"cannot load the re-ranker model ({type(e).__name__}: {e})") from e
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] not in (len(FEATURE_NAMES), None, "None"):
            raise RerankError(f"re-ranker expects inputs {[(i.name, i.shape) for i in inputs]}, "
                              f"not one [n, {len(FEATURE_NAMES)}] matrix")
        self.input_name = inputs[0].name

    @classmethod
    def from_manifest(cls, onnx_bytes: bytes, manifest: Mapping[str, Any]) -> Reranker:
        """Check ``manifest['reranker']`` (feature_names, feature_version) and load the model."""
        meta = manifest.get("reranker") or {}
        if "feature_names" not in meta or "feature_version" not in meta:
            raise RerankError("bundle manifest has no reranker.feature_names/feature_version")
        return cls(onnx_bytes, meta["feature_names"], meta["feature_version"])

    @classmethod
    def from_bundle(cls, bundle: Any) -> Reranker | None:
        """The bundle's re-ranker, or None when it was trained without one (not an error)."""
        if bundle.reranker_onnx is None:
            return None
        return cls.from_manifest(bundle.reranker_onnx, bundle.manifest)

    def score(self, features: np.ndarray) -> np.ndarray:
        """One score per row (higher = better); raises RerankError, never returns NaN silently."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES):
            raise RerankError(f"features shaped {x.shape}, expected [n, {len(FEATURE_NAMES)}]")
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        try:
            out = self.session.run(None, {self.input_name: x})[0]
        except Exception as e:
            raise RerankError(f"re-ranker failed ({type(e).__name__}: {e})") from e
        scores = np.asarray(out, dtype=np.float32).reshape(len(x), -1)[:, 0]
        if not np.all(np.isfinite(scores)):
            raise RerankError("re-ranker returned non-finite scores")
        return scores

    def rank(self, features: np.ndarray) -> np.ndarray:
        """Positions of the rows, best first (ties keep the first-stage order)."""
        return np.argsort(-self.score(features), kind="stable")
