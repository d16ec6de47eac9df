"""`mallrec rules preview`: what a member would see in a slot, and why, with no server.

The slot runs in-process through the same engine the server uses (``service.engine.run``), on
a bundle loaded from disk, at a chosen time. Online state is either none (no recent events, no
impressions: what a member sees on a fresh day) or read once from a live Redis, read-only; the
preview says which. ``diff`` runs two rules files over a sample of members and counts what moves.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from service.domain import Context, OnlineState, SlotResult, TraceStep
from service.engine.query import SlotQuery
from service.engine.run import run
from service.errors import MallrecError
from service.model import ServingModel
from service.profile import MemberProfile
from service.slots import SlotRegistry


def parse_at(text: str | None, tz: ZoneInfo, default: float) -> float:
    """``--at``: seconds since the epoch, or ISO-8601 (no offset: the rules file's time zone)."""
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise MallrecError(f"--at {text!r}: not a time (e.g. 2026-06-01T10:00, or seconds since the "
                           "epoch)") from e
    return (t if t.tzinfo else t.replace(tzinfo=tz)).timestamp()


def run_slot(model: ServingModel, registry: SlotRegistry, member: str, slot: str, count: int, at: float,
             context: Context = Context(), state: OnlineState | None = None) -> SlotResult:
    """The slot as the server would run it for ``member`` at ``at``, its experiment arm included (an
    arm's other model version is not loaded here: the preview runs it on ``model`` and says so)."""
    chosen = registry.choose(slot, member, at)
    if chosen is None:
        raise MallrecError(f"--slot {slot}: no such slot (the rules file has: {', '.join(registry.names())})")
    profile = MemberProfile(model, member, state or OnlineState(), at)
    count = min(count, chosen.count) if chosen.count else count
    result = run(chosen.recipe, SlotQuery(model, profile, slot, count, context))
    if chosen.experiment:
        note = chosen.note + (f" (previewed on {model.version})" if chosen.model else "")
        result.trace.steps.insert(0, TraceStep("experiment", "experiment", note=note))
    return replace(result, experiment=chosen.experiment, arm=chosen.arm, model_version=model.version)


def item_facts(model: ServingModel, item_id: str) -> dict[str, Any]:
    """What a merchandiser checks at a glance: category, brand, price, stock, tags."""
    i = model.item_index.get(item_id)
    if i is None:
        return {}
    items = model.bundle.items
    price = float(items.price[i])
    return {"category": str(items.category[i]), "brand": str(items.brand[i]),
            "price": None if np.isnan(price) else round(price, 2), "stock": int(items.stock[i]),
            "tags": str(items.tags[i])}


def result_json(model: ServingModel, result: SlotResult) -> dict[str, Any]:
    return {"slot": result.slot, "degraded": list(result.degraded), "experiment": result.experiment,
            "arm": result.arm,
            "items": [{"position": n, "item_id": i.item_id, "score": i.score, "source": i.source,
                       **item_facts(model, i.item_id),
                       "reasons": [{"step": r.step, "kind": r.kind, "detail": r.detail} for r in i.reasons]}
                      for n, i in enumerate(result.items, 1)],
            "trace": [{"step": s.step, "kind": s.kind, "note": s.note, "added": s.added, "removed": s.removed,
                       "moved": s.moved, "gave_way": s.gave_way, "ms": s.ms} for s in result.trace.steps]}


def sample_members(model: ServingModel, n: int, seed: int = 0) -> list[str]:
    """A fixed sample of the bundle's members (the same members for both files)."""
    ids = model.bundle.members.member_id.astype(str)
    if len(ids) <= n:
        return ids.tolist()
    return sorted(np.random.default_rng(seed).choice(ids, n, replace=False).tolist())


@dataclass
class Diff:
    """How a change of rules moves one slot over a sample of members."""

    slot: str
    members: int = 0
    members_changed: int = 0
    positions: int = 0
    positions_changed: int = 0
    entering: Counter[str] = field(default_factory=Counter)  # item -> members who now see it
    leaving: Counter[str] = field(default_factory=Counter)  # item -> members who no longer see it
    rules_old: Counter[str] = field(default_factory=Counter)  # rule -> members it acted for
    rules_new: Counter[str] = field(default_factory=Counter)
    gave_way_old: Counter[str] = field(default_factory=Counter)
    gave_way_new: Counter[str] = field(default_factory=Counter)

    def add(self, old: SlotResult, new: SlotResult) -> None:
        a, b = [i.item_id for i in old.items], [i.item_id for i in new.items]
        self.members += 1
        self.members_changed += a != b
        self.positions += max(len(a), len(b))
        self.positions_changed += sum(x != y for x, y in zip(a, b, strict=False)) + abs(len(a) - len(b))
        self.entering.update(set(b) - set(a))
        self.leaving.update(set(a) - set(b))
        for result, rules, yielded in ((old, self.rules_old, self.gave_way_old),
                                       (new, self.rules_new, self.gave_way_new)):
            acted = {s.step for s in result.trace.steps
                     if s.kind in ("filter", "boost", "rule", "rerank") and (s.removed or s.added or s.moved)}
            rules.update(acted)
            yielded.update({gave_way_rule(line) for s in result.trace.steps for line in s.gave_way})

    def as_json(self) -> dict[str, Any]:
        rules = sorted({*self.rules_old, *self.rules_new, *self.gave_way_old, *self.gave_way_new})
        return {"slot": self.slot, "members": self.members, "members_changed": self.members_changed,
                "positions_changed_share": round(self.positions_changed / max(self.positions, 1), 4),
                "entering": dict(self.entering.most_common()), "leaving": dict(self.leaving.most_common()),
                "rules": {r: {"acted_old": self.rules_old[r], "acted_new": self.rules_new[r],
                              "gave_way_old": self.gave_way_old[r], "gave_way_new": self.gave_way_new[r]}
                          for r in rules}}


def gave_way_rule(line: str) -> str:
    """The rule named at the start of a "gave way" line: "'New in front' gave way: ..."."""
    return line.partition("' gave way")[0].removeprefix("'")


def diff(model: ServingModel, old: SlotRegistry, new: SlotRegistry, slot: str, members: list[str],
         count: int, at: float, context: Context = Context(),
         states: dict[str, OnlineState] | None = None) -> Diff:
    out = Diff(slot)
    for m in members:
        state = (states or {}).get(m)
        out.add(run_slot(model, old, m, slot, count, at, context, state),
                run_slot(model, new, m, slot, count, at, context, state))
    return out
