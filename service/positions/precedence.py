"""The precedence check: the last step of a slot with position rules.

Later stages win by construction (pins after quotas after diversity after boosts), so a rule can
end up broken by a later one. This step re-checks every diversity and quota rule on the final
order and records, for each one that no longer holds, which later rules moved items into its
window: "'Mix categories' gave way to 'Hero pin': ...". It never changes the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from service.engine.query import Report, SlotQuery, Step
from service.engine.slate import Slate
from service.positions import window


@dataclass
class PrecedenceCheck:
    rules: Sequence[Step]  # the slot's rule steps in the order they ran
    name: str = "precedence"
    kind: ClassVar[str] = "rule"

    def apply(self, q: SlotQuery, slate: Slate) -> Report | None:
        report = Report()
        for i, rule in enumerate(self.rules):
            check = getattr(rule, "violation", None)
            broken = check(q, slate) if check is not None else None
            if broken is None:
                continue
            later = {getattr(r, "name", "") for r in self.rules[i + 1:]}
            k = window(q, getattr(rule, "top", q.count), len(slate))
            blame = sorted(slate.steps_of(slate.order[:k].tolist()) & later)
            if blame:
                report.give_way(f"'{rule.name}' gave way to {', '.join(repr(b) for b in blame)}: {broken}")
        return report

    def describe(self) -> str:
        return "re-checks diversity and quotas after the later rules ran"
