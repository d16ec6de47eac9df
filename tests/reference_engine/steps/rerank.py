"""The learned re-ranker as a slot step: the slot's candidates scored in one ONNX batch, boosts kept.

It runs after the boosts / buries (and the recipe's own steps, such as the search box's
``query_first``) and before diversity, quotas and pins, so the rules that fix positions still hold
after it: merchandisers keep control of what is where.

**Boosts and the re-ranker: re-rank, then re-apply the boosts.**

1. Each candidate's first-stage score is read back (``Candidate.first_stage``: its score with the
   boosts' factors and the lifts taken out) and the candidates are put in that order, so the
   features describe a blended list like the ones the model was trained on, not a boosted one.
2. The model scores every candidate in one batch. Its order gets a score of the blend's shape:
   1 at the top, falling linearly toward 0 (``1 - position / n``).
3. Each candidate's boosts are applied again to that score (``learned * scale + shift``, as
   ``Candidate.boost`` / ``Candidate.lift`` recorded them), and the list is re-sorted.

A boost ×2 thus moves an item on the learned order just as it did on the blended one (from 30 of 40
to about 20), a bury keeps pushing down, and the search box's query matches stay ahead of the rest,
re-ranked among themselves. Nothing a merchandiser set is erased; their reasons stay on the items.

**Failure never reaches the frontend.** No model where the slot asks for one, a model that could not
load, a ``RerankError`` or any exception in the features or the scoring: the list is served as it came
(the first-stage order, boosts included), the slot is marked degraded (``q.degrade("rerank")``: the
response says ``degraded``, the metrics count it) and the trace says why. ``if_available = True`` (the
built-in slots' default) skips quietly when the bundle was trained without a re-ranker.

Served items it moved say so in their reasons ("re-ranked up from 14 to 2", positions in the
candidate list; written once the slot is cut, so 200 candidates cost no 200 reasons); the trace names
the step "rerank", with the time it took and how many candidates it scored and moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from service.rerank.features import Candidates, compute
from service.rerank.runtime import RerankRuntime, rerank_runtime
from tests.reference_engine.domain import Candidate, Reason
from tests.reference_engine.pipeline import SlotQuery


@dataclass
class Rerank:
    name: str = "rerank"
    if_available: bool = False  # True: a bundle without a re-ranker is no failure (built-in slots)
    kind: ClassVar[str] = "rerank"

    def describe(self) -> str:
        when = " when the model has one" if self.if_available else ""
        return f"learned re-ranker{when}, boosts re-applied"

    def apply(self, q: SlotQuery, candidates: list[Candidate]) -> list[Candidate]:
        if len(candidates) < 2:
            return candidates
        runtime = rerank_runtime(q.model)
        if not runtime.ready:
            if runtime.problem is None and self.if_available:
                q.note(f"{runtime.absent}: first-stage order kept")
                return candidates
            return _fall_back(q, candidates, runtime.problem or runtime.absent or "no re-ranker")
        try:
            learned = _learned_order(q, runtime, candidates)
        except Exception as e:  # features or scoring: whatever it is, the slot is still served
            why = f"{type(e).__name__}: {e}"
            runtime.failed(why)
            return _fall_back(q, candidates, why)
        n = len(learned)
        for pos, c in enumerate(learned):
            c.score = (1.0 - pos / n) * c.scale + c.shift
        ranked = sorted(learned, key=lambda c: -c.score)  # stable: equal scores keep the learned order
        was = {id(c): pos for pos, c in enumerate(candidates)}
        # (candidate, where its reason goes, old, new position): later steps may add reasons after it
        moves = [(c, len(c.reasons), old, pos) for pos, c in enumerate(ranked) if (old := was[id(c)]) != pos]
        q.when_served(lambda served: self._say_moved(served, moves))
        q.note(f"{n} candidates scored in one batch, {len(moves)} moved")
        return ranked

    def _say_moved(self, served: list[Candidate], moves: list[tuple[Candidate, int, int, int]]) -> None:
        """Reasons for the served items it moved only (a slot serves 10 of 200 candidates)."""
        shown = {id(c) for c in served}
        for c, at, old, pos in moves:
            if id(c) in shown:
                why = f"re-ranked {'up' if pos < old else 'down'} from {old + 1} to {pos + 1}"
                c.reasons.insert(at, Reason(self.name, self.kind, why))


def _learned_order(q: SlotQuery, runtime: RerankRuntime, candidates: list[Candidate]) -> list[Candidate]:
    """The candidates in the model's order; nothing on them changes, so a failure leaves them as they came."""
    assert runtime.ctx is not None and runtime.scorer is not None
    base = np.fromiter((c.first_stage for c in candidates), dtype=np.float64, count=len(candidates))
    first = np.argsort(-base, kind="stable")  # the blended order, before any boost
    ordered = [candidates[i] for i in first]
    batch = Candidates.from_names([c.item for c in ordered], [c.source for c in ordered], base[first])
    scores = runtime.scorer.score(compute(runtime.ctx, q.profile.rerank_inputs(runtime.ctx), batch))
    return [ordered[i] for i in np.argsort(-scores, kind="stable")]


def _fall_back(q: SlotQuery, candidates: list[Candidate], why: str) -> list[Candidate]:
    q.degrade("rerank")
    q.note(f"first-stage order kept (degraded): {why}")
    return candidates
