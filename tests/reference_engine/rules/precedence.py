"""The precedence check: the last step of a slot with position rules.

Later stages win by construction (pins after quotas after diversity after boosts), so a rule can
end up broken by a later one. This step re-checks every diversity and quota rule on the final
order and records, for each one that no longer holds, which later rules moved items into its
window: "'Mix categories' gave way to 'Hero pin': ...". It never changes the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from tests.reference_engine.domain import Candidate
from tests.reference_engine.pipeline import SlotQuery, Step
from tests.reference_engine.rules.positions import window


class Checked(Protocol):
    name: str
    top: int

    def violation(self, q: SlotQuery, candidates: list[Candidate]) -> str | None: ...


@dataclass
class PrecedenceCheck:
    rules: Sequence[Step]  # the slot's rule steps in the order they ran
    name: str = "precedence"
    kind: ClassVar[str] = "rule"

    def apply(self, q: SlotQuery, candidates: list[Candidate]) -> list[Candidate]:
        for i, rule in enumerate(self.rules):
            check = getattr(rule, "violation", None)
            broken = check(q, candidates) if check is not None else None
            if broken is None:
                continue
            later = {getattr(r, "name", "") for r in self.rules[i + 1:]}
            k = window(q, getattr(rule, "top", q.count), len(candidates))
            blame = sorted({r.step for c in candidates[:k] for r in c.reasons if r.step in later})
            if blame:
                q.give_way(f"'{rule.name}' gave way to {', '.join(repr(b) for b in blame)}: {broken}")
        return candidates

    def describe(self) -> str:
        return "re-checks diversity and quotas after the later rules ran"
