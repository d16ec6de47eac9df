"""Steps after blending: they boost, lift or re-rank the blended slate.

A step has ``name``, ``kind`` (boost | rerank) and ``apply(q, slate) -> Report | None``: it changes
the slate's scores and order (array operations over all its rows) and logs reasons for the rows it
touched. The position rules (diversity, quotas, pins) run after them: ``service.positions``.
"""
