"""The slot trace, written only when someone will read it (rules preview, rules check, tests).

The engine (``service.engine.run``) reports every component through a ``Tracer``: what a source
brought, what a filter removed, how a step reordered the slate. ``Tracer`` turns that into
``TraceStep``s (item ids, timings, the component's description and notes); ``NoTracer`` does
nothing, so a served request pays neither for the ids nor for the order diffs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from service.domain import Trace, TraceStep
from service.engine.query import Report


class StepLog:
    """One component's entry while it runs (a context manager); records it on exit."""

    def __init__(self, tracer: Tracer, name: str, kind: str, component: object) -> None:
        self.tracer = tracer
        self.step = TraceStep(name, kind)
        describe = getattr(component, "describe", None)
        if describe is not None:
            self.step.note = describe()

    def __enter__(self) -> StepLog:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.step.ms = round((time.perf_counter() - self.t0) * 1000, 3)
        self.tracer.trace.record(self.step)

    def reported(self, report: Report | None) -> None:
        if report is not None:
            self.step.note = "; ".join(n for n in (self.step.note, *report.notes) if n)
            self.step.gave_way = list(report.gave_way)

    def brought(self, items: np.ndarray) -> None:
        self.step.added = self.tracer.ids(items)

    def removed(self, items: np.ndarray) -> None:
        self.step.removed = self.tracer.ids(np.unique(items))

    def reordered(self, before: np.ndarray, after: np.ndarray, count: int) -> None:
        """What a step did: items it removed, added, and moved into, within or out of the top ``count``."""
        was, now = before.tolist(), after.tolist()
        kept = set(now)
        self.step.removed = self.tracer.ids([i for i in was if i not in kept])
        self.step.added = self.tracer.ids(sorted(kept - set(was)))
        self.step.moved = _moves(self.tracer.item_ids, was, now, count)


class Tracer:
    """Writes the trace of one slot run."""

    enabled = True

    def __init__(self, slot: str, item_ids: np.ndarray) -> None:
        self.trace = Trace(slot)
        self.item_ids = item_ids

    def ids(self, items: Sequence[int] | np.ndarray) -> list[str]:
        return self.item_ids[np.asarray(items, dtype=np.int64)].tolist()

    def step(self, name: str, kind: str, component: object = None) -> StepLog:
        return StepLog(self, name, kind, component)

    def cut(self, served: int, items: np.ndarray) -> None:
        self.trace.record(TraceStep("cut", "cut", removed=self.ids(items[served:]),
                                    note=f"served {served} of {len(items)}"))


class _Nothing(StepLog):
    """StepLog's stand-in when nobody reads the trace (records nothing, holds nothing)."""

    def __init__(self) -> None:
        pass

    def __enter__(self) -> _Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def reported(self, report: Report | None) -> None:
        return None

    def brought(self, items: np.ndarray) -> None:
        return None

    def removed(self, items: np.ndarray) -> None:
        return None

    def reordered(self, before: np.ndarray, after: np.ndarray, count: int) -> None:
        return None


_NOTHING = _Nothing()


class NoTracer(Tracer):
    """The served path: no ids, no diffs, no timings; the result's trace is empty."""

    enabled = False

    def step(self, name: str, kind: str, component: object = None) -> _Nothing:
        return _NOTHING

    def cut(self, served: int, items: np.ndarray) -> None:
        return None


def _moves(ids: np.ndarray, before: list[int], after: list[int], count: int) -> list[str]:
    """"item old->new" (1-based) for items that moved into, within or out of the served top."""
    was = {item: pos for pos, item in enumerate(before)}
    out = []
    for pos, item in enumerate(after):
        old = was.get(item)
        if old is not None and old != pos and (pos < count or old < count):
            out.append(f"{ids[item]} {old + 1}->{pos + 1}")
    return out
