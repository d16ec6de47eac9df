"""The slate engine: one slot's candidates as columns, run through a recipe.

    sources -> filters -> blend -> backfill (when short) -> steps -> positions -> cut to count

``slate`` holds the columns (item, source, rank within its source, score, boost scale, lift) and the
current order; ``query`` is what a component may read (read-only) and what it reports back;
``run`` runs a recipe; ``trace`` writes the trace when someone reads it (preview, checks, tests).
The components live beside their kind: ``service.candidates`` (sources), ``service.filters``,
``service.blend``, ``service.steps`` and ``service.positions``.
"""
