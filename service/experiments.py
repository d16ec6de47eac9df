"""Experiments: a slot served by one of several arms, each member always in the same arm.

An arm is a whole slot recipe (the slot with the arm's overrides: sources, rules, rerank, count...)
and optionally another published model version. A member's arm comes from a stable hash of
(salt, member_id): the same on every replica and after restarts, for known and unknown members
alike, and independent of anything else the member does. A new salt reshuffles members.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.slots import SlotRecipe


@dataclass(frozen=True)
class SlotArm:
    name: str
    weight: float
    recipe: SlotRecipe
    model: str | None = None  # another published bundle version; None: the live model
    count: int | None = None  # the arm's own `count` (items shown), when it sets one


@dataclass(frozen=True)
class SlotExperiment:
    """One experiment as one slot runs it."""

    name: str
    salt: str
    arms: tuple[SlotArm, ...]
    start: float | None = None  # epoch seconds; None: open
    end: float | None = None
    bounds: tuple[float, ...] = ()  # the arms' cumulative weights (worked out once, not per request)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds", tuple(accumulate(a.weight for a in self.arms)))

    def active(self, now: float) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)

    def assign(self, member_id: str) -> SlotArm:
        """The member's arm: its hash's place in [0, 1) against the arms' cumulative weight shares."""
        point = bucket(self.salt, member_id) * self.bounds[-1]
        return self.arms[min(bisect_right(self.bounds, point), len(self.arms) - 1)]


def bucket(salt: str, member_id: str) -> float:
    """A uniform number in [0, 1) from (salt, member_id): 64 bits of BLAKE2b."""
    digest = hashlib.blake2b(f"{salt}\x1f{member_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
