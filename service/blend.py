"""Blending: merge the filtered pools of a slot's sources into one order.

``Interleave`` is a smooth weighted round-robin: a source with weight 0.75 fills about three of
every four positions, spread evenly, so "personal with some new launches mixed in" is literally the
recipe's weights. An item brought by two sources keeps its first place and gains an "also" reason.
Blended scores fall linearly from 1 at the top (``1 - position / n``).

Which pool takes each turn depends only on the weights until a pool runs out, so that sequence is
worked out once per set of weights (``_Turns``) and shared by every request; the loop here only
places items. The trainer builds its re-ranker pools with the same ``interleave``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.engine.query import SlotQuery
from service.engine.slate import Slate


@dataclass
class Interleave:
    weights: dict[str, float] = field(default_factory=dict)
    name: str = "interleave"

    def describe(self) -> str:
        total = sum(self.weights.values()) or 1.0
        return " · ".join(f"{n} {w / total:.0%}" for n, w in self.weights.items())

    def blend(self, q: SlotQuery, slate: Slate, pools: list[np.ndarray], limit: int | None = None) -> None:
        """``pools``: the slate rows of each source (the recipe's order), best first. ``limit``: place
        only the first ``limit`` (nothing after the blend reorders the slot); scores are the same."""
        names = [o.name for o in slate.origins[:len(pools)]]
        live = [k for k, rows in enumerate(pools) if len(rows) and self.weights.get(names[k], 0) > 0]
        slate.blend = self.name
        if not live:
            slate.order = np.zeros(0, dtype=np.int64)
            return
        rows = [pools[k] for k in live]
        weights = [self.weights[names[k]] for k in live]
        flat = np.concatenate(rows)
        sizes = [len(r) for r in rows]
        starts = np.cumsum([0, *sizes]).tolist()
        items = slate.item[flat].tolist()
        split = [items[a:a + size] for a, size in zip(starts, sizes, strict=False)]
        placed, also = _place(split, starts, weights, limit)
        slate.order = flat[placed]
        n = len(placed)
        if limit is not None and n == limit:  # the scores count every item the full blend would place
            n = len(set(items))  # the distinct items of the pools, whatever the catalogue's size
        slate.score[slate.order] = 1.0 - np.arange(len(placed)) / n
        slate.met_again(slate.order, also, [names[k] for k in live])


def interleave(pools: Sequence[list[int]], weights: Sequence[float], n: int | None = None
               ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The weighted round-robin over ``pools`` (item lists, best first), first come first placed.

    Returns (pool, index in that pool) of each placed item in order, at most ``n`` of them, and
    (placed position, pool) for each duplicate met, in the order met (an item's "also" sources)."""
    starts = np.cumsum([0, *(len(p) for p in pools)])
    placed, also = _place(pools, starts.tolist(), weights, n)
    pool = np.searchsorted(starts, placed, side="right") - 1
    return [(int(k), int(at - starts[k])) for k, at in zip(pool, placed, strict=True)], also


def _place(pools: Sequence[list[int]], starts: list[int], weights: Sequence[float], n: int | None
           ) -> tuple[list[int], list[tuple[int, int]]]:
    """``interleave`` with each placed item given as its position in the pools laid end to end
    (``starts``: where each pool begins), so a slate maps them to rows with one take.

    While every pool runs, the turns are the shared sequence for these weights; once one runs out,
    the round-robin goes on turn by turn over the pools left, from the credits at that turn."""
    limit = sum(len(p) for p in pools) if n is None else n
    out: list[int] = []
    also: list[tuple[int, int]] = []
    if not pools or limit <= 0:
        return out, also
    placed: dict[int, int] = {}
    heads = [0] * len(pools)
    sizes = [len(p) for p in pools]
    turns = _turns(tuple(weights))
    shared = turns.upto(limit + 1)  # each turn places one item until a pool runs out: enough turns
    running: list[int] | None = None  # the pools left, once one ran out
    w: list[float] = []
    credit: list[float] = []
    total = 0.0
    best = step = 0
    while len(out) < limit:
        if running is None:
            k = shared[step]
        elif running:
            best = 0 if len(running) == 1 else _next_turn(credit, w, total)
            k = running[best]
        else:
            break
        pool, i, end = pools[k], heads[k], sizes[k]
        while i < end and pool[i] in placed:
            also.append((placed[pool[i]], k))
            i += 1
        if i < end:
            placed[pool[i]] = len(out)
            out.append(starts[k] + i)
            i += 1
        heads[k] = i
        if i >= end:  # pool k ran out
            if running is None:
                running = [j for j in range(len(pools)) if j != k]
                credit = [c for j, c in enumerate(turns.credits[step]) if j != k]
                w = [weights[j] for j in running]
            else:
                for column in (running, w, credit):
                    del column[best]
            total = sum(w)  # summed afresh, as the turns were: a difference in the last bit can flip a tie
        step += 1
    return out, also


class _Turns:
    """The pool of each turn while none runs out, and the credits after it (grown on demand)."""

    def __init__(self, w: tuple[float, ...]) -> None:
        self.w, self.total = w, sum(w)
        self.credit = [0.0] * len(w)
        self.turns: list[int] = []
        self.credits: list[tuple[float, ...]] = []
        self.lock = threading.Lock()

    def upto(self, n: int) -> list[int]:
        """The first ``n`` turns."""
        if n > len(self.turns):
            with self.lock:
                while n > len(self.turns):
                    self.turns.append(_next_turn(self.credit, self.w, self.total))
                    self.credits.append(tuple(self.credit))
        return self.turns[:n]


_TURNS: dict[tuple[float, ...], _Turns] = {}


def _turns(w: tuple[float, ...]) -> _Turns:
    found = _TURNS.get(w)
    if found is None:
        if len(_TURNS) > 256:  # recipes have a handful of weight sets; a flood of new ones is not kept
            _TURNS.clear()
        found = _TURNS.setdefault(w, _Turns(w))
    return found


def _next_turn(credit: list[float], w: Sequence[float], total: float) -> int:
    """One turn of the smooth weighted round-robin: every pool earns its weight, the richest takes
    the turn and pays ``total`` (``credit`` is updated in place)."""
    best = 0
    for j in range(len(w)):
        credit[j] += w[j]
        if credit[j] > credit[best]:
            best = j  # ties go to the recipe's first source
    credit[best] -= total
    return best
