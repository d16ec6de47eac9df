"""A slot's candidates as columns: the one data model of the engine (and of the trainer's pools).

A row is one candidate. Its columns are the item, the source that brought it (an index into
``sources``), its rank within that source, its score, the product of the boosts applied to it
(``scale``) and what lifts added (``shift``), so ``score == first-stage score * scale + shift``
holds until a position rule gives scores to positions. ``order`` is the current order, a
permutation of (some of) the rows; steps replace it, never the rows.

Reasons are not strings on every row: a source says how to explain one of its rows, and a step
logs which rows it touched and how to say it (``because``). ``reasons(rows)`` renders them for the
rows that are served only (ten of a few hundred candidates).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.domain import Reason

Explain = Callable[[int], str]  # a source's row (its rank in what the source brought) -> the reason
Detail = str | Callable[[int], str]  # one text for every row, or one per row (given the slate's row)


@dataclass(frozen=True)
class Found:
    """What a source brings: items best first, their scores, and how to explain the k-th of them."""

    items: np.ndarray  # int64 item indices
    scores: np.ndarray  # float64
    explain: Explain

    @classmethod
    def none(cls) -> Found:
        return cls(np.zeros(0, np.int64), np.zeros(0), lambda k: "")

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Origin:
    """A source as the slate knows it: its name (reasons, trace, the source selector) and its reasons."""

    name: str
    explain: Explain | None  # None: rows placed by a rule (a pin) carry no source reason


@dataclass(frozen=True)
class Because:
    """One logged reason: the step, its kind, the rows it applies to and what it says."""

    rows: frozenset[int]
    step: str
    kind: str
    detail: Detail


@dataclass
class Slate:
    item: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rank: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0))
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    origins: list[Origin] = field(default_factory=list)
    met: list[tuple[np.ndarray, list[tuple[int, int]], list[str]]] = field(default_factory=list)  # see also
    log: list[Because] = field(default_factory=list)
    held: dict[int, int] = field(default_factory=dict)  # position (0-based) -> item a pin holds there
    blend: str = "interleave"  # the blend's name, for its "also from" reasons

    # ------------------------------------------------------------------ building

    def origin(self, name: str, explain: Explain | None) -> int:
        self.origins.append(Origin(name, explain))
        return len(self.origins) - 1

    @classmethod
    def of(cls, found: Sequence[tuple[str, Found]]) -> tuple[Slate, list[np.ndarray]]:
        """A slate of what the sources found (not placed in ``order`` yet), and each source's rows."""
        sizes = [len(f) for _, f in found]
        ends = np.cumsum(sizes)
        total = int(ends[-1]) if sizes else 0
        items = np.concatenate([np.zeros(0, np.int64), *(f.items for _, f in found)], dtype=np.int64)
        src = np.repeat(np.arange(len(found)), sizes)
        slate = cls(item=items, src=src, rank=np.arange(total) - (ends - sizes)[src],
                    score=np.concatenate([np.zeros(0), *(f.scores for _, f in found)], dtype=np.float64),
                    scale=np.ones(total), shift=np.zeros(total),
                    origins=[Origin(name, f.explain) for name, f in found])
        return slate, [np.arange(e - s, e) for s, e in zip(sizes, ends.tolist(), strict=True)]

    def add(self, items: np.ndarray, src: int, scores: np.ndarray | float,
            rank: np.ndarray | None = None) -> np.ndarray:
        """Append rows (not placed in ``order``); returns their row numbers."""
        n = len(items)
        start = len(self.item)
        self.item = np.concatenate([self.item, np.asarray(items, np.int64)])
        self.src = np.concatenate([self.src, np.full(n, src, np.int64)])
        self.rank = np.concatenate([self.rank, np.arange(n) if rank is None else rank])
        self.score = np.concatenate([self.score, np.broadcast_to(np.asarray(scores, np.float64), (n,))])
        self.scale = np.concatenate([self.scale, np.ones(n)])
        self.shift = np.concatenate([self.shift, np.zeros(n)])
        return np.arange(start, start + n)

    def met_again(self, placed: np.ndarray, also: list[tuple[int, int]], names: list[str]) -> None:
        """The blend's duplicates: (position in ``placed``, index into ``names``) of each, in the order
        met. Turned into ``also`` only when a reason is read (the trainer's pools never read one)."""
        if also:
            self.met.append((placed, also, names))

    @property
    def _also(self) -> dict[int, list[str]]:
        """``also``, worked out once for the rows read after the blend."""
        key = len(self.met)
        cached = self.__dict__.get("_also_cache")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_also_cache"] = (key, self.also)
        return cached[1]

    @property
    def also(self) -> dict[int, list[str]]:
        """Row -> the sources that brought it again after the one it came from (its "also" reasons)."""
        out: dict[int, list[str]] = {}
        for placed, also, names in self.met:
            rows = placed[[at for at, _ in also]].tolist()
            for row, (_, k) in zip(rows, also, strict=True):
                out.setdefault(row, []).append(names[k])
        return out

    def because(self, rows: Sequence[int] | np.ndarray, step: str, kind: str, detail: Detail) -> None:
        touched = frozenset(np.asarray(rows, np.int64).tolist())
        if touched:
            self.log.append(Because(touched, step, kind, detail))

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self.order)

    @property
    def items(self) -> np.ndarray:
        """Items in the current order."""
        return self.item[self.order]

    def names(self, rows: np.ndarray) -> np.ndarray:
        """The source name of each row."""
        return np.array([o.name for o in self.origins], dtype=object)[self.src[rows]]

    def first_stage(self, rows: np.ndarray) -> np.ndarray:
        """Scores before any boost or lift: where the blend (or backfill) put each row."""
        scale = self.scale[rows]
        safe = np.where(scale != 0, scale, 1.0)
        return np.where(scale != 0, (self.score[rows] - self.shift[rows]) / safe, self.score[rows])

    def reasons(self, row: int) -> tuple[Reason, ...]:
        """Every reason of one row, in the order the components gave them."""
        origin = self.origins[int(self.src[row])]
        out = [] if origin.explain is None else \
            [Reason(origin.name, "source", origin.explain(int(self.rank[row])))]
        out += [Reason(self.blend, "blend", f"also from {name}") for name in self._also.get(row, ())]
        for b in self.log:
            if row in b.rows:
                out.append(Reason(b.step, b.kind, b.detail if isinstance(b.detail, str) else b.detail(row)))
        return tuple(out)

    def steps_of(self, rows: Sequence[int]) -> set[str]:
        """The names of the components in the reasons of ``rows`` (no text is rendered)."""
        out: set[str] = set()
        also = self._also
        for row in rows:
            origin = self.origins[int(self.src[row])]
            if origin.explain is not None:
                out.add(origin.name)
            if row in also:
                out.add(self.blend)
        out |= {b.step for b in self.log if not b.rows.isdisjoint(rows)}
        return out

    # ------------------------------------------------------------------ reordering

    def sort(self) -> None:
        """Order by score, best first; equal scores keep their current order."""
        self.order = self.order[np.argsort(-self.score[self.order], kind="stable")]

    def place(self, order: Sequence[int] | np.ndarray) -> None:
        """A position rule's new order: scores belong to positions (the item now at position p gets the
        score the list had at p), so served scores still fall from the top; an added row repeats the last."""
        new = np.asarray(order, np.int64)
        scores = np.sort(self.score[self.order])[::-1]
        if len(new) > len(scores):
            floor = scores[-1] if len(scores) else 0.0
            scores = np.concatenate([scores, np.full(len(new) - len(scores), floor)])
        self.score[new] = scores[:len(new)]
        self.order = new
