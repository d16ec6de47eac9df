"""Load a rules file: read it, validate all of it, report every problem at once, build the slots.

Validation goes piece by piece (the top level, each slot table, each rule on its own, then the
checks across rules in ``checks.py``), so one bad rule never hides the next. Every problem names
the slot, the rule (its name and index), the field, the line and why; warnings (a pin on an item
the bundle does not have, a category no item has) never block a file, errors always do.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError

from service.errors import MallrecError
from service.model import ServingModel
from service.rules.document import Document, Path_, file_format, parse
from service.rules.guard import RulesOutline, outline_of
from service.rules.schema import RULE_TYPES, FileTable, Rule, SlotTable
from service.slots import DEFAULT_SLOTS, SlotRegistry

SLOT_FIELDS = ("about", "sources", "filters", "steps", "bought_recently_days", "backfill", "pool")


@dataclass(frozen=True)
class Problem:
    level: str  # error | warning
    message: str
    slot: str | None = None
    rule: str | None = None  # "'Spring push' (rules[2])"
    field: str | None = None
    line: int | None = None

    def format(self, file: str = "") -> str:
        where = f"{file}:{self.line}" if file and self.line else (file or (f"line {self.line}" if self.line
                                                                          else ""))
        about = ", ".join(p for p in (f"slot '{self.slot}'" if self.slot else "",
                                      f"rule {self.rule}" if self.rule else "",
                                      f"field '{self.field}'" if self.field else "") if p)
        return ": ".join(p for p in (where, self.level, about, self.message) if p)


class RulesError(MallrecError):
    """A rules file with errors; ``problems`` holds all of them (and the warnings)."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.level == "error"]
        lines = "\n".join("  " + p.format(file) for p in errors)
        super().__init__(f"{file}: {len(errors)} error{'s' * (len(errors) != 1)} in the rules file:\n{lines}")


@dataclass
class SlotConfig:
    """One slot after validation: its recipe spec (built-in merged with the file), rules in file order."""

    name: str
    spec: dict[str, Any]
    rules: list[Rule]
    count: int | None = None
    rerank: bool | None = None
    builtin: bool = True


@dataclass
class ArmConfig:
    name: str
    weight: float
    slots: dict[str, SlotConfig]  # the experiment's slots with this arm's changes
    model: str | None = None


@dataclass
class ExperimentConfig:
    name: str
    salt: str
    arms: list[ArmConfig]
    start: float | None = None
    end: float | None = None


@dataclass
class RulesConfig:
    timezone: ZoneInfo
    slots: dict[str, SlotConfig]
    about: str = ""
    rules: int = 0  # rules in the file (every-slot and per-slot)
    allow_removing_slots: bool = False
    experiments: list[ExperimentConfig] = field(default_factory=list)

    @property
    def outline(self) -> RulesOutline:
        return RulesOutline(self.rules, tuple(sorted(n for n, s in self.slots.items() if not s.builtin)),
                            self.allow_removing_slots, len(self.experiments))


@dataclass
class LoadedRules:
    registry: SlotRegistry
    digest: str  # sha-256 of the file's bytes
    problems: list[Problem] = field(default_factory=list)  # warnings (a loaded file has no errors)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    @property
    def outline(self) -> RulesOutline:
        """What the file defines (the reload guard compares it with the serving rules')."""
        return outline_of(self.registry)


class Collector:
    """Problems of one file, each placed on its line."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = [Problem("error", why, line=line) for line, why in doc.errors]

    def add(self, level: str, message: str, path: Path_, *, slot: str | None = None, rule: str | None = None,
            field: str | None = None) -> None:
        self.problems.append(Problem(level, message, slot, rule, field, self.doc.line(path)))

    def invalid(self, e: ValidationError, path: Path_, model: type[BaseModel], *, slot: str | None = None,
                rule: str | None = None) -> None:
        for err in e.errors():
            loc = tuple(err["loc"])
            self.add("error", explain(err, model, self.doc.fmt), (*path, *loc), slot=slot, rule=rule,
                     field=dotted(loc))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]


def dotted(loc: tuple[Any, ...]) -> str | None:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def explain(err: Any, model: type[BaseModel], fmt: str = "toml") -> str:
    """pydantic's message in a merchandiser's words, with what was given and how to fix it."""
    kind, given = err["type"], err.get("input")
    if kind == "extra_forbidden":
        return f"unknown field (known: {', '.join(f for f in model.model_fields if f != 'type')})"
    if kind == "missing":
        return "required"
    if kind == "string_type":
        hint = " (YAML reads yes/no/on/off as booleans and bare digits as numbers)" \
            if fmt == "yaml" and isinstance(given, bool | int | float) else ""
        return f"expected text, got {type(given).__name__} {given!r}; put it in quotes{hint}"
    if kind == "bool_type":
        return f"expected true or false, got {given!r}"
    msg = str(err["msg"]).replace("Input should be", "must be").replace("Value error, ", "")
    scalar = isinstance(given, str | int | float | bool) or given is None
    return f"{msg} (got {given!r})" if scalar and kind != "value_error" else msg


M = TypeVar("M", bound=BaseModel)


def lenient(c: Collector, model: type[M], raw: dict[str, Any], path: Path_, *, slot: str | None = None) -> M:
    """Validate; on errors report them all, then go on without the bad fields (their defaults), so
    the rest of the table is still checked."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        c.invalid(e, path, model, slot=slot)
        bad = {err["loc"][0] for err in e.errors() if err["loc"]}
    try:
        return model.model_validate({k: v for k, v in raw.items() if k not in bad})
    except ValidationError:
        return model()


def rule_label(raw: Any, where: str) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"'{name}' ({where})" if isinstance(name, str) and name.strip() else where


def validate_rule(c: Collector, raw: Any, path: Path_, slot: str | None) -> Rule | None:
    where = f"rules[{path[-1]}]"
    label = rule_label(raw, where)
    if not isinstance(raw, dict):
        c.add("error", "a rule is a table with at least name and type", path, slot=slot, rule=label)
        return None
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in RULE_TYPES:
        why = "required: say which rule this is" if kind is None else f"unknown rule type {kind!r}"
        c.add("error", f"{why} (one of: {', '.join(RULE_TYPES)})", (*path, "type"), slot=slot, rule=label,
              field="type")
        return None
    try:
        rule = RULE_TYPES[kind].model_validate(raw)
    except ValidationError as e:
        c.invalid(e, path, RULE_TYPES[kind], slot=slot, rule=label)
        return None
    for name, why in rule.problems():
        c.add("error", why, (*path, name) if name else path, slot=slot, rule=label, field=name or None)
    return rule


def check(doc: Document, *, model: ServingModel | None = None, now: float | None = None,
          models_dir: Path | None = None) -> tuple[RulesConfig | None, list[Problem]]:
    """Validate a parsed file; returns the config (None when there are errors) and every problem.
    ``models_dir``: where experiment arms' model versions must be published (unchecked without)."""
    from service.rules.experiments import check_experiments

    c = Collector(doc)
    if c.errors and not doc.data:  # unreadable; a YAML file with a key given twice is checked on
        return None, c.problems
    top = lenient(c, FileTable, doc.data, ())
    tz = ZoneInfo("UTC")
    try:
        tz = ZoneInfo(top.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        c.add("error", f"unknown time zone {top.timezone!r} (e.g. Asia/Shanghai, UTC)", ("timezone",),
              field="timezone")
    every: list[tuple[Rule, Path_]] = [(r, ("rules", i)) for i, raw in enumerate(top.rules)
             if (r := validate_rule(c, raw, ("rules", i), None)) is not None]
    tables = top.slots
    n_rules = len(top.rules) + sum(len(t["rules"]) for t in tables.values()
                                   if isinstance(t, dict) and isinstance(t.get("rules"), list))
    slots: dict[str, SlotConfig] = {}
    when = time.time() if now is None else now
    for name in dict.fromkeys([*DEFAULT_SLOTS, *tables]):
        raw = tables.get(name, {})
        if not name or any(ch.isspace() for ch in name):
            c.add("error", "a slot name has no spaces (the frontend sends it as is)", ("slots", name),
                  slot=name)
            continue
        if (slot := slot_config(c, name, raw, ("slots", name), every, tz, model, when)) is not None:
            slots[name] = slot
    experiments = check_experiments(c, top.experiments, slots, tables, every, tz, model, when, models_dir)
    problems = list(dict.fromkeys(c.problems))  # every-slot rules are checked once per slot
    problems.sort(key=lambda p: (p.level != "error", p.line or 0))
    if any(p.level == "error" for p in problems):
        return None, problems
    return RulesConfig(tz, slots, top.about, n_rules, top.allow_removing_slots, experiments), problems


def slot_config(c: Collector, name: str, raw: Any, path: Path_, every: list[tuple[Rule, Path_]],
                tz: ZoneInfo, model: ServingModel | None, now: float) -> SlotConfig | None:
    """One slot table (the file's, or an experiment arm's) validated and merged over the built-in
    recipe, with every-slot rules first; None (problems added) when it cannot be built."""
    from service.rules.checks import check_slot

    if not isinstance(raw, dict):
        c.add("error", "a slot is a table (sources, rules, ...)", path, slot=name)
        return None
    table = lenient(c, SlotTable, raw, path, slot=name)
    own = [(r, (*path, "rules", i)) for i, raw_rule in enumerate(table.rules)
           if (r := validate_rule(c, raw_rule, (*path, "rules", i), name)) is not None]
    slot = merge(name, table, [r for r, _ in every] + [r for r, _ in own])
    if slot is None:
        if "sources" not in raw:
            c.add("error", "a new slot needs sources (e.g. sources = [{ use = \"popular\" }])", path,
                  slot=name, field="sources")
        return None
    check_slot(c, slot, table, every + own, path, tz, model, now)
    return slot


def merge(name: str, table: SlotTable, rules: list[Rule]) -> SlotConfig | None:
    """A built-in slot's spec with the file's fields over it; a new slot from the file alone."""
    base = DEFAULT_SLOTS.get(name)
    if base is None and table.sources is None:
        return None
    spec: dict[str, Any] = dict(base or {})
    for f in SLOT_FIELDS:
        if f in table.model_fields_set:
            spec[f] = getattr(table, f)
    if spec.get("backfill") == "none":
        spec["backfill"] = None
    if table.rerank is not None:  # the file decides where (and whether) the re-ranker runs
        spec["steps"] = [s for s in spec.get("steps", []) if _use_name(s) != "rerank"]
    return SlotConfig(name, spec, rules, table.count, table.rerank, base is not None)


def _use_name(use: Any) -> str | None:
    return use if isinstance(use, str) else (use.get("use") if isinstance(use, dict) else use.use)


def rules_version(data: bytes, mtime: float) -> str:
    """Short content hash + the file's modification time (UTC), e.g. ``3fa1c2d9e0-20250601T083000Z``."""
    return f"{hashlib.sha256(data).hexdigest()[:10]}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(mtime))}"


def load_rules(path: str | Path, *, model: ServingModel | None = None,
               models_dir: Path | None = None) -> LoadedRules:
    """Read, check and build; raises RulesError (every problem) when the file has any error."""
    from service.rules.recipe import build_rules_registry

    path = Path(path)
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as e:
        raise MallrecError(f"{path}: cannot read the rules file ({e.strerror})") from e
    try:
        doc = parse(data.decode("utf-8"), file_format(path))
    except UnicodeDecodeError as e:
        why = f"not UTF-8 text ({e.reason} at byte {e.start})"
        raise RulesError(str(path), [Problem("error", why)]) from e
    config, problems = check(doc, model=model, models_dir=models_dir)
    if config is None:
        raise RulesError(str(path), problems)
    registry = build_rules_registry(config, rules_version(data, mtime))
    if model is not None:
        failed = dry_run(registry, model)
        if failed:
            raise RulesError(str(path), failed + problems)
    return LoadedRules(registry, hashlib.sha256(data).hexdigest(), problems, config.timezone)


def dry_run(registry: SlotRegistry, model: ServingModel) -> list[Problem]:
    """Run every slot once on the bundle (a known member and a cold start, no state), so a parameter
    that only fails at request time (``days = "thirty"``) stops the file instead of a request."""
    from service.domain import Context, OnlineState
    from service.engine.query import SlotQuery
    from service.engine.run import run
    from service.profile import MemberProfile

    members = [str(model.bundle.members.member_id[0])] if len(model.bundle.members) else []
    context = Context(query=str(model.bundle.items.category[0]), order_item_ids=(str(model.item_ids[0]),))
    out = []
    for name in registry.names():
        recipe = registry.get(name)
        assert recipe is not None
        for member in [*members, "mallrec-dry-run"]:
            q = SlotQuery(model, MemberProfile(model, member, OnlineState(), time.time()), name, 10, context)
            try:
                run(recipe, q)
            except Exception as e:  # anything: the file must not go live
                why = f"fails when run on model {model.version}: {type(e).__name__}: {e}"
                out.append(Problem("error", why, slot=name))
                break
    return out
