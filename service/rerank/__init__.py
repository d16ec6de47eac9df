"""Learned re-ranking of a slot's blended candidates (LightGBM lambdarank, served as ONNX).

Two modules, one per job:

- ``features``: the one home of feature code (used by training too, so the two cannot drift):
  ``FeatureContext.from_bundle(bundle)`` once per bundle, ``ctx.member_inputs(...)`` once per
  request, ``compute(ctx, member, Candidates.from_names(...))`` once per slot.
- ``scorer``: ``Reranker.from_bundle(bundle)`` (None when the bundle has no model) and
  ``scorer.score(features)``; every failure is a ``RerankError`` -> serve the first-stage order and
  mark the response degraded.
"""

from service.rerank.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    SOURCES,
    Candidates,
    FeatureContext,
    MemberInputs,
    compute,
)
from service.rerank.scorer import Reranker, RerankError

__all__ = ["FEATURE_NAMES", "FEATURE_VERSION", "SOURCES", "Candidates", "FeatureContext",
           "MemberInputs", "RerankError", "Reranker", "compute"]
