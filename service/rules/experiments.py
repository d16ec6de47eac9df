"""The rules file's ``[experiments.NAME]`` tables: validated like the rest of the file, every problem
at once with its line.

    [experiments.checkin_rerank]
    slots = ["check_in"]
    salt = "2026-12"                    # a new salt reshuffles members
    start = 2026-12-05T00:00:00         # optional window, in the file's time zone
    [[experiments.checkin_rerank.arms]]
    name = "control"
    weight = 50
    [[experiments.checkin_rerank.arms]]
    name = "no_rerank"
    weight = 50
    slot = { rerank = false }           # any field a slot table may hold, over the slot's own
    model = "20261201T..."              # optional: another published bundle version

Each arm's slot is the file's slot (or the built-in one) with the arm's fields over it; an arm that
gives ``rules`` replaces the slot's own rules (the file's every-slot rules still apply first). Errors:
an unknown slot, weights that do not add up to a positive number, two arms with one name, an arm's
slot that would not build, a model version not published, and two experiments on one slot whose
time windows overlap. Warnings include an arm's model version that is not pinned (``mallrec models
pin``): ``mallrec train --keep`` could prune it while the experiment runs.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from service.bundle_versions import read_pinned
from service.model import ServingModel
from service.model_bundle import MANIFEST, VERSIONS_DIR
from service.rules.document import Path_
from service.rules.loader import ArmConfig, Collector, ExperimentConfig, SlotConfig, lenient, slot_config
from service.rules.schema import ArmTable, ExperimentTable, Rule


def check_experiments(c: Collector, tables: dict[str, Any], slots: dict[str, SlotConfig],
                      slot_tables: dict[str, Any], every: list[tuple[Rule, Path_]], tz: ZoneInfo,
                      model: ServingModel | None, now: float, models_dir: Path | None
                      ) -> list[ExperimentConfig]:
    out = []
    for name, raw in tables.items():
        path: Path_ = ("experiments", name)
        if not isinstance(raw, dict):
            c.add("error", "an experiment is a table (slots, salt, arms)", path)
            continue
        table = lenient(c, ExperimentTable, raw, path)
        for f, why in table.problems():
            c.add("error", why, (*path, f), field=f)
        exp = _experiment(c, name, table, path, slots, slot_tables, every, tz, model, now, models_dir)
        if exp is not None:
            out.append(exp)
    _overlaps(c, out, tables)
    _shared_salts(c, out)
    return out


def _shared_salts(c: Collector, exps: list[ExperimentConfig]) -> None:
    """Arms come from (salt, member_id): two experiments with one salt split members the same way, so
    the members of one's first arm are those of the other's first arm, and their effects mix."""
    seen: dict[str, str] = {}
    for e in exps:
        if e.salt in seen:
            c.add("warning", f"experiment {e.name!r} has the salt of {seen[e.salt]!r}: both split members "
                             "the same way; give each experiment its own salt",
                  ("experiments", e.name, "salt"), field="salt")
        seen.setdefault(e.salt, e.name)


def _experiment(c: Collector, name: str, table: ExperimentTable, path: Path_, slots: dict[str, SlotConfig],
                slot_tables: dict[str, Any], every: list[tuple[Rule, Path_]], tz: ZoneInfo,
                model: ServingModel | None, now: float, models_dir: Path | None) -> ExperimentConfig | None:
    unknown = [s for s in table.slots if s not in slots]
    for s in unknown:
        c.add("error", f"no slot {s!r} (slots: {', '.join(sorted(slots))})", (*path, "slots"), field="slots")
    arms: list[ArmConfig] = []
    for i, raw in enumerate(table.arms):
        where: Path_ = (*path, "arms", i)
        if not isinstance(raw, dict):
            c.add("error", "an arm is a table (name, weight, slot, model)", where)
            continue
        arm = lenient(c, ArmTable, raw, where)
        if any(a.name == arm.name for a in arms):
            c.add("error", f"another arm is already called {arm.name!r}", (*where, "name"), field="name")
        if arm.model is not None:
            _check_version(c, arm.model, (*where, "model"), model, models_dir)
        configs = {}
        for s in table.slots:
            if s in slots:
                base = slot_tables.get(s, {})
                merged = {**(base if isinstance(base, dict) else {}), **arm.slot}
                built = slot_config(c, s, merged, (*where, "slot"), every, tz, model, now)
                if built is not None:
                    configs[s] = built
        arms.append(ArmConfig(arm.name, arm.weight, configs, arm.model))
    if table.arms and not sum(a.weight for a in arms) > 0:
        c.add("error", "the arms' weights must add up to more than 0", (*path, "arms"), field="arms")
    if unknown or len(arms) != len(table.arms):
        return None
    return ExperimentConfig(name, table.salt, arms, _epoch(table.start, tz), _epoch(table.end, tz))


def _check_version(c: Collector, version: str, where: Path_, model: ServingModel | None,
                   models_dir: Path | None) -> None:
    if models_dir is None:
        if model is None or model.version != version:
            c.add("warning", f"model version {version!r} not checked (give --models to check it is "
                             "published)", where, field="model")
        return
    if not (Path(models_dir) / VERSIONS_DIR / version / MANIFEST).is_file():
        c.add("error", f"model version {version!r} is not published in {models_dir}/versions "
                       "(`mallrec models list` shows what is)", where, field="model")
    elif version not in read_pinned(models_dir):
        c.add("warning", f"arm model {version} is not pinned: `mallrec train --keep` may remove it; run "
                         f"`mallrec models pin --models {models_dir} {version}`", where, field="model")


def _epoch(t: dt.datetime | None, tz: ZoneInfo) -> float | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=tz)).timestamp()


def _overlaps(c: Collector, exps: list[ExperimentConfig], tables: dict[str, Any]) -> None:
    """Two experiments on one slot must not run at the same time: a member would be in both."""
    for i, a in enumerate(exps):
        for b in exps[i + 1:]:
            shared = sorted(set(_slots(a)) & set(_slots(b)))
            if shared and _window(a)[0] < _window(b)[1] and _window(b)[0] < _window(a)[1]:
                c.add("error", f"experiments {a.name!r} and {b.name!r} both run on {', '.join(shared)} at "
                               "the same time: give them windows (start, end) that do not overlap",
                      ("experiments", b.name, "slots"), field="slots")


def _slots(e: ExperimentConfig) -> list[str]:
    return sorted({s for arm in e.arms for s in arm.slots})


def _window(e: ExperimentConfig) -> tuple[float, float]:
    return (e.start if e.start is not None else -math.inf, e.end if e.end is not None else math.inf)
