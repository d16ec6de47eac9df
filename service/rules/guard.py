"""The reload guard: a rules file that would silently drop what is serving is refused on reload.

An editor that saves an empty buffer, or a copy cut short, often leaves valid TOML: it would go live
without a single merchandiser rule, and clients asking for a slot only that file defined would get
INVALID_ARGUMENT. So a reload is refused (logged and counted, the serving rules kept) when the new
file

- defines no rule and no slot of its own while the serving rules had some, or
- removes a slot that served requests in the last hour,

unless the file says it means it with a top-level ``allow_removing_slots = true``. The first load
of a process is never refused: there is nothing serving to lose.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from service.errors import MallrecError
from service.slots import DEFAULT_SLOTS, SlotRegistry

ALLOW = "allow_removing_slots"


@dataclass(frozen=True)
class RulesOutline:
    """What a rules file defines beyond the built-in slots (what a reload could take away)."""

    rules: int = 0  # every rule: the every-slot ones and each slot's own
    file_slots: tuple[str, ...] = ()  # slots that only the file defines, sorted
    allow_removing_slots: bool = False
    experiments: int = 0

    @property
    def empty(self) -> bool:
        return self.rules == 0 and not self.file_slots and self.experiments == 0

    def describe(self) -> str:
        slots = f"slot{'s' * (len(self.file_slots) != 1)} {', '.join(self.file_slots)}" \
            if self.file_slots else "no slots of its own"
        exps = f", {self.experiments} experiment{'s' * (self.experiments != 1)}" if self.experiments else ""
        return f"{self.rules} rule{'s' * (self.rules != 1)}{exps} and {slots}"


@dataclass(frozen=True)
class RulesRegistry(SlotRegistry):
    """A registry built from a rules file, with the file's outline for the next reload's guard."""

    outline: RulesOutline = field(default_factory=RulesOutline)


class RemovalRefused(MallrecError):
    """A valid rules file refused on reload as a probably truncated save (the message says why)."""


def outline_of(registry: SlotRegistry | None) -> RulesOutline:
    """The serving registry's outline (the built-in registry: no rules, no file slots)."""
    if isinstance(registry, RulesRegistry):
        return registry.outline
    names = registry.names() if registry is not None else []
    return RulesOutline(0, tuple(n for n in names if n not in DEFAULT_SLOTS))


def refuse_removal(file: str, live: SlotRegistry | None, new: SlotRegistry,
                   recently_served: Collection[str] = ()) -> None:
    """RemovalRefused when ``new`` would drop everything ``live`` defines, or a slot that served
    requests lately (``recently_served``), and the new file does not allow it."""
    outline = outline_of(new)
    if live is None or outline.allow_removing_slots:
        return
    old = outline_of(live)
    fix = (f"if the file is cut short, save it whole again; if you mean it, add `{ALLOW} = true` at "
           f"its top (and remove it once this change is live)")
    if outline.empty and not old.empty:
        raise RemovalRefused(f"{file}: refused, probably a truncated save: it defines no rules and no "
                             f"slots of its own, the serving rules have {old.describe()}; {fix}")
    removed = sorted(set(live.names()) - set(new.names()))
    busy = [name for name in removed if name in set(recently_served)]
    if busy:
        raise RemovalRefused(f"{file}: refused, probably a truncated save: it removes slot"
                             f"{'s' * (len(busy) != 1)} {', '.join(busy)}, which served requests in "
                             f"the last hour (clients asking for it would get INVALID_ARGUMENT); {fix}")
