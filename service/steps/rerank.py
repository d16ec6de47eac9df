"""The learned re-ranker as a slot step: the slot's candidates scored in one ONNX batch, boosts kept.

It runs after the boosts / buries (and the recipe's own steps, such as the search box's
``query_first``) and before diversity, quotas and pins, so the rules that fix positions still hold
after it: merchandisers keep control of what is where.

**Boosts and the re-ranker: re-rank, then re-apply the boosts.**

1. Each candidate's first-stage score is read back (``Slate.first_stage``: its score with the
   boosts' factors and the lifts taken out) and the candidates are put in that order, so the
   features describe a blended list like the ones the model was trained on, not a boosted one.
2. The model scores every candidate in one batch. Its order gets a score of the blend's shape:
   1 at the top, falling linearly toward 0 (``1 - position / n``).
3. Each candidate's boosts are applied again to that score (``learned * scale + shift``, as
   the slate's ``scale`` and ``shift`` columns recorded them), and the list is re-sorted.

A boost ×2 thus moves an item on the learned order just as it did on the blended one (from 30 of 40
to about 20), a bury keeps pushing down, and the search box's query matches stay ahead of the rest,
re-ranked among themselves. Nothing a merchandiser set is erased; their reasons stay on the items.

**Failure never reaches the frontend.** No model where the slot asks for one, a model that could not
load, a ``RerankError`` or any exception in the features or the scoring: the list is served as it came
(the first-stage order, boosts included), the slot is marked degraded (its report says "rerank":
the response says ``degraded``, the metrics count it) and the trace says why. ``if_available = True`` (the
built-in slots' default) skips quietly when the bundle was trained without a re-ranker.

Served items it moved say so in their reasons ("re-ranked up from 14 to 2", positions in the
candidate list; rendered only for the served rows, so 200 candidates cost no 200 reasons); the trace names
the step "rerank", with the time it took and how many candidates it scored and moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from service.engine.query import Report, SlotQuery
from service.engine.slate import Slate
from service.rerank.features import OTHER_SOURCE, SOURCE_INDEX, Candidates, compute
from service.rerank.runtime import RerankRuntime, rerank_runtime


@dataclass
class Rerank:
    name: str = "rerank"
    if_available: bool = False  # True: a bundle without a re-ranker is no failure (built-in slots)
    kind: ClassVar[str] = "rerank"

    def describe(self) -> str:
        when = " when the model has one" if self.if_available else ""
        return f"learned re-ranker{when}, boosts re-applied"

    def apply(self, q: SlotQuery, slate: Slate) -> Report | None:
        if len(slate) < 2:
            return None
        runtime = rerank_runtime(q.model)
        if not runtime.ready:
            if runtime.problem is None and self.if_available:
                return Report().note(f"{runtime.absent}: first-stage order kept")
            return _fall_back(runtime.problem or runtime.absent or "no re-ranker")
        try:
            learned = _learned_order(q, runtime, slate)
        except Exception as e:  # features or scoring: whatever it is, the slot is still served
            why = f"{type(e).__name__}: {e}"
            runtime.failed(why)
            return _fall_back(why)
        n = len(learned)
        slate.score[learned] = (1.0 - np.arange(n) / n) * slate.scale[learned] + slate.shift[learned]
        was = np.empty(len(slate.item), dtype=np.int64)
        was[slate.order] = np.arange(n)
        slate.order = learned
        slate.sort()  # stable: equal scores keep the learned order
        now = np.empty(len(slate.item), dtype=np.int64)
        now[slate.order] = np.arange(n)
        moved = slate.order[was[slate.order] != now[slate.order]]

        def moved_by(row: int) -> str:
            old, pos = int(was[row]), int(now[row])
            return f"re-ranked {'up' if pos < old else 'down'} from {old + 1} to {pos + 1}"

        slate.because(moved, self.name, self.kind, moved_by)
        return Report().note(f"{n} candidates scored in one batch, {len(moved)} moved")


def _learned_order(q: SlotQuery, runtime: RerankRuntime, slate: Slate) -> np.ndarray:
    """The slate's rows in the model's order; the slate is not changed, so a failure leaves it as it came."""
    assert runtime.ctx is not None and runtime.scorer is not None
    rows = slate.order
    base = slate.first_stage(rows)
    first = np.argsort(-base, kind="stable")  # the blended order, before any boost
    ordered = rows[first]
    found = batch(slate, ordered, base[first])
    scores = runtime.scorer.score(compute(runtime.ctx, q.profile.rerank_inputs(runtime.ctx), found))
    return ordered[np.argsort(-scores, kind="stable")]


def batch(slate: Slate, rows: np.ndarray, first_stage: np.ndarray | None = None) -> Candidates:
    """The re-ranker's batch of ``rows`` (given in their first-stage order): what the model scores
    here, and what the trainer's pools (training/rerank_candidates.py) give it to learn from.
    ``first_stage``: the rows' first-stage scores when the caller has them already."""
    codes = np.array([SOURCE_INDEX.get(o.name, OTHER_SOURCE) for o in slate.origins], dtype=np.int64)
    scores = slate.first_stage(rows) if first_stage is None else first_stage
    return Candidates(slate.item[rows], codes[slate.src[rows]], scores, np.arange(len(rows)))


def _fall_back(why: str) -> Report:
    return Report().note(f"first-stage order kept (degraded): {why}").degrade("rerank")
