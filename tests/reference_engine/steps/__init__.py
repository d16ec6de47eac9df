"""Steps after blending: they reorder, boost or drop candidates of the blended list.

A step has ``name``, ``kind`` (boost | rule | rerank) and ``apply(q, candidates) -> candidates``.
Exposure rules (service/rules) and the re-ranker plug in here, after the boosts.
"""
