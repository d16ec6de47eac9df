"""Run a slot recipe on a slate and trace what each component did.

    sources -> filters -> blend -> backfill (when short) -> steps -> cut to count

What a slot does is data in its recipe (``service.slots``); the engine knows only the component
shapes of ``service.engine.query``. The trace is written only when the query asks for it
(``SlotQuery.trace``): previews and checks do, served requests do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from service.domain import ServedItem, SlotResult
from service.engine.query import Filter, Report, SlotQuery
from service.engine.slate import Slate
from service.engine.trace import NoTracer, Tracer
from service.filters import not_in

if TYPE_CHECKING:
    from service.slots import SlotRecipe


def run(recipe: SlotRecipe, q: SlotQuery) -> SlotResult:
    """Run ``recipe`` for one slot; with ``q.trace`` the trace records every step, with its time in ms."""
    tracer = Tracer(recipe.name, q.model.item_ids) if q.trace else NoTracer(recipe.name, q.model.item_ids)
    slate, degraded = arrange(recipe, q, tracer)
    served = slate.order[:q.count]
    tracer.cut(len(served), slate.items)
    ids, names = q.model.item_ids, slate.names(served)
    items = [ServedItem(str(ids[slate.item[r]]), round(float(slate.score[r]), 6), str(name), slate.reasons(r))
             for r, name in zip(served.tolist(), names.tolist(), strict=True)]
    return SlotResult(recipe.name, items, tracer.trace, tuple(degraded))


def arrange(recipe: SlotRecipe, q: SlotQuery, tracer: Tracer | None = None, *, top: bool = False
            ) -> tuple[Slate, list[str]]:
    """The slate in the order the slot serves it (before the cut), and the parts it skipped.

    ``top``: only the first ``q.count`` rows matter and no reason will be read (the trainer's
    re-ranker pools): a slot with no steps places only those, with the scores the full blend gives."""
    tracer = tracer or NoTracer(recipe.name, q.model.item_ids)
    if q.filters is not recipe.filters:
        q = replace(q, filters=recipe.filters)
    want = recipe.pool * q.count + len(q.exclude)
    found = []
    for use in recipe.sources:
        with tracer.step(use.source.name, "source") as step:
            found.append((use.source.name, use.source.fetch(q, want)))
            step.brought(found[-1][1].items)
            remark = getattr(use.source, "remark", None)  # e.g. a bundle that cannot feed it
            if remark is not None and tracer.enabled:
                step.reported(Report([note for note in (remark(q),) if note]))
    slate, pools = Slate.of(found)
    keep = kept(recipe.filters, q, slate.item, tracer)
    pools = [rows[keep[rows]] for rows in pools]
    limit = q.count if top and not recipe.steps else None
    with tracer.step(recipe.blend.name, "blend", recipe.blend):
        recipe.blend.blend(q, slate, pools, limit)
    if len(slate) < q.count and recipe.backfill is not None:
        _backfill(recipe, q, slate, tracer)

    degraded: list[str] = []
    for s in recipe.steps:
        with tracer.step(s.name, s.kind, s) as step:
            before = slate.items if tracer.enabled else slate.order
            report = s.apply(q, slate)
            step.reported(report)
            if tracer.enabled:
                step.reordered(before, slate.items, q.count)
        if report is not None:
            degraded += [d for d in report.degraded if d not in degraded]
    return slate, degraded


def kept(filters: Sequence[Filter], q: SlotQuery, items: np.ndarray,
         tracer: Tracer | None = None) -> np.ndarray:
    """One boolean per item: it passed every filter. Each filter sees the items the ones before it
    kept (one vectorised call); removals go to the trace."""
    tracer = tracer or NoTracer("", q.model.item_ids)
    alive: np.ndarray | None = None  # None: every item still in (no index array to take through)
    for f in filters:
        with tracer.step(f.name, "filter", f) as step:
            now = items if alive is None else items[alive]
            if not len(now):
                continue
            keep = np.asarray(f.keep(q, now), dtype=bool)
            remark = getattr(f, "remark", None) if tracer.enabled else None
            if remark is not None:
                step.reported(Report([note for note in (remark(q),) if note]))
            if keep.all():
                continue
            step.removed(now[~keep])
            alive = np.flatnonzero(keep) if alive is None else alive[keep]
    if alive is None:
        return np.ones(len(items), dtype=bool)
    mask = np.zeros(len(items), dtype=bool)
    mask[alive] = True
    return mask


def _backfill(recipe: SlotRecipe, q: SlotQuery, slate: Slate, tracer: Tracer) -> None:
    """Too few survived: top up from the recipe's backfill source, filtered like the rest, below
    everything blended and still in its order."""
    assert recipe.backfill is not None
    have = slate.items
    n = recipe.pool * q.count + len(q.exclude) + len(have)
    with tracer.step(recipe.backfill.name, "backfill") as step:
        found = recipe.backfill.fetch(q, n)
        fresh = np.flatnonzero(not_in(found.items, have.tolist()))
        step.brought(found.items[fresh])
    rows = slate.add(found.items[fresh], slate.origin(recipe.backfill.name, found.explain), 0.0, rank=fresh)
    rows = rows[kept(recipe.filters, q, slate.item[rows], tracer)]
    floor = float(slate.score[slate.order].min()) if len(slate.order) else 1.0
    slate.score[rows] = floor * (1 - (np.arange(len(rows)) + 1) / (len(rows) + 1))
    slate.because(rows, recipe.backfill.name, "backfill", "filled a slot the recipe's sources left empty")
    slate.order = np.concatenate([slate.order, rows])
