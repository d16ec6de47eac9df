"""From validated events to what models fit on: id maps, the weighted matrix, splits.

`Interactions` is columnar (NumPy arrays, internal int codes) so 10M+ events stay cheap: every
step here is vectorised, nothing loops over events in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from service.model_bundle import EVENT_TYPES, ItemTable, MemberTable
from training.config import TrainConfig, Weighting, format_duration

PURCHASE = EVENT_TYPES.index("purchase")


@dataclass
class Interactions:
    """Validated events. ``member``/``item`` index ``member_ids``/``item_ids``."""

    member: np.ndarray  # int32 codes
    item: np.ndarray  # int32 codes
    event: np.ndarray  # uint8: index into EVENT_TYPES
    ts: np.ndarray  # int64 seconds
    member_ids: np.ndarray  # str, code -> external id
    item_ids: np.ndarray  # str, code -> external id
    quantity: np.ndarray | None = None  # float32, 1 when the column is absent
    report: dict[str, Any] = field(default_factory=dict)  # counts of rows read / rejected, by reason

    def __len__(self) -> int:
        return len(self.member)

    @property
    def n_members(self) -> int:
        return len(self.member_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def subset(self, mask: np.ndarray) -> Interactions:
        """The same id space, fewer events (for splits)."""
        q = None if self.quantity is None else self.quantity[mask]
        return replace(self, member=self.member[mask], item=self.item[mask], event=self.event[mask],
                       ts=self.ts[mask], quantity=q)


@dataclass
class Dataset:
    """Events, catalogue and members in one id space: item code i is ``items.item_id[i]``."""

    events: Interactions
    items: ItemTable
    members: MemberTable

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def now(self) -> int:
        """The data's clock: the newest event's time."""
        return int(self.events.ts.max()) if len(self.events) else 0

    def with_events(self, events: Interactions) -> Dataset:
        return replace(self, events=events)


# --------------------------------------------------------------------------- the data's clock


def has_clock(ev: Interactions) -> bool:
    """Whether event times tell events apart at all. A data set without timestamps (written as
    ``ts = 0``, or any one time) has no age, no recent window and no order beyond the file's."""
    return len(ev) > 0 and int(ev.ts.min()) != int(ev.ts.max())


#: Positions are small: a ``ts`` past this (about 4 months in seconds) is read as time, not a rank.
ORDER_MAX_TS = 10_000_000
#: Share of members (with two or more distinct times) whose times are consecutive integers.
ORDER_SHARE = 0.9


@dataclass(frozen=True)
class Clock:
    """What the events' ``ts`` can be trusted for.

    - ``none``: every event has the same time (``ts = 0``): no age, no order beyond the file's.
      Decay and trending are off, splits and labels are random per member.
    - ``order``: ``ts`` is a position in the member's history (0, 1, 2, ...), not a time. "Last" is
      meaningful and member-relative decay counts steps, but the data's newest event and a trending
      window are not.
    - ``time``: real seconds; everything applies.
    """

    kind: str  # none | order | time
    line: str  # one sentence: what was found and what follows from it

    @property
    def has_order(self) -> bool:
        return self.kind != "none"


def read_clock(ev: Interactions) -> Clock:
    """Classify the events' clock (see ``Clock``); vectorised over events."""
    if not has_clock(ev):
        t = int(ev.ts[0]) if len(ev) else 0
        return Clock("none", f"clock: none (every event has ts {t}): time decay and trending are off, "
                             f"validation and re-ranker labels hold out random items per member")
    if int(ev.ts.min()) >= 0 and int(ev.ts.max()) <= ORDER_MAX_TS and np.issubdtype(ev.ts.dtype, np.integer):
        width = int(ev.ts.max()) - int(ev.ts.min()) + 1  # one int64 key per (member, ts)
        keys = np.unique(ev.member.astype(np.int64) * width + (ev.ts.astype(np.int64) - int(ev.ts.min())))
        member, ts = keys // width, keys % width
        first = np.r_[True, member[1:] != member[:-1]]
        starts = np.flatnonzero(first)
        distinct = np.diff(np.r_[starts, len(member)])
        span = np.maximum.reduceat(ts, starts) - np.minimum.reduceat(ts, starts)
        several = distinct > 1
        if several.any() and float(np.mean(span[several] == distinct[several] - 1)) >= ORDER_SHARE:
            return Clock("order", "clock: order only (ts counts positions in each member's history): "
                                  "leave-last-out and member-relative decay apply; global decay and "
                                  "trending are off")
    return Clock("time", "clock: time (ts are seconds): time decay, trending and time splits apply")


def trending_has_history(ev: Interactions, window: float | None) -> bool:
    """Whether some event is older than the trending window: the earlier rate trending compares with."""
    return len(ev) > 0 and int(ev.ts.min()) <= int(ev.ts.max()) - (window or 86400.0)


def fit_clock(ds: Dataset, config: TrainConfig, clock: Clock | None = None
              ) -> tuple[TrainConfig, dict[str, str]]:
    """The config as the data's clock (``read_clock``) allows, and one line per thing that falls
    back ("decay", "trending").

    ``clock``: the whole data's clock when ``ds`` is a split's training part (holding out items
    breaks a member's run of positions, so the part alone could read as time).

    - none: time decay is off (every event would have age 0; a bundle that said otherwise would
      make the service decay its history against the wall clock) and trending is plain popularity.
    - order: ts are positions, so an age measured from the data's newest event compares positions
      of different members: global decay (``decay_from = "global"``, popularity's half-life) is
      off and trending is plain popularity; member-relative decay counts steps and stays.
    - time: unchanged; trending is plain popularity only when no event is older than its window.
    The re-ranker's label split says its own fallback (``training.reranker.label_split``)."""
    clock = clock or read_clock(ds.events)
    notes: dict[str, str] = {}
    w, pop = config.weighting, config.popularity
    if clock.kind == "none" and (w.half_life or w.member_half_life or pop.half_life):
        notes["decay"] = (f"no clock: every event has the same time (ts {ds.now}), so time decay is off "
                          f"(weighting.half_life, weighting.member_half_life, popularity.half_life)")
        config = config.model_copy(update={
            "weighting": w.model_copy(update={"half_life": None, "member_half_life": None}),
            "popularity": pop.model_copy(update={"half_life": None})})
    elif clock.kind == "order":
        off = []
        if w.decay_from == "global" and (w.half_life or w.member_half_life):
            off.append("weighting.half_life and weighting.member_half_life (decay_from global)")
            w = w.model_copy(update={"half_life": None, "member_half_life": None})
        if pop.half_life:
            off.append("popularity.half_life")
            pop = pop.model_copy(update={"half_life": None})
        if off:
            notes["decay"] = (f"clock order only: global time decay is off ({', '.join(off)}); "
                              f"decay_from = \"member\" counts steps in each member's history and applies")
            config = config.model_copy(update={"weighting": w, "popularity": pop})
    if clock.kind == "order" and len(ds.events):
        # a window wider than the data leaves no earlier rate: trending_scores is plain popularity
        span = float(ds.events.ts.max() - ds.events.ts.min()) + 1.0
        if (pop.trending_window or 86400.0) < span:
            pop = pop.model_copy(update={"trending_window": span})
            config = config.model_copy(update={"popularity": pop})
        notes["trending"] = ("trending is plain popularity: ts are positions, not times, so there is "
                             "no recent window")
    elif len(ds.events) and not trending_has_history(ds.events, pop.trending_window):
        notes["trending"] = (f"trending is plain popularity: no event is older than the trending window "
                             f"({format_duration(pop.trending_window or 86400.0)}), so there is no "
                             f"earlier rate to grow from")
    return config, notes


def confidence_matrix(ds: Dataset, weighting: Weighting) -> sp.csr_matrix:
    """Members x items confidence: sum of event weights x time decay, log-squashed.

    Duplicate (member, item) pairs are summed by the COO -> CSR conversion, which is the fast path
    (no Python loop, no sort in Python).
    """
    ev = ds.events
    w = np.asarray(weighting.events.as_array(), dtype=np.float32)[ev.event]
    if ev.quantity is not None:
        w = w * np.where(ev.event == PURCHASE, np.maximum(ev.quantity, 1), 1).astype(np.float32)
    if weighting.half_life:
        w = w * decay(ev, weighting.half_life, weighting.decay_from, ds.n_members)
    keep = w > 0
    m = sp.csr_matrix((w[keep], (ev.member[keep], ev.item[keep])),
                      shape=(ds.n_members, ds.n_items), dtype=np.float32)
    m.sum_duplicates()
    if weighting.log_scale:
        np.log1p(m.data, out=m.data)
    m.eliminate_zeros()
    return m


def decay(ev: Interactions, half_life: float, origin: str, n_members: int) -> np.ndarray:
    """0.5 ** (age / half_life); age from the newest event overall or the member's own newest."""
    if len(ev) == 0:
        return np.ones(0, dtype=np.float32)
    if origin == "member":
        latest = np.full(n_members, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(latest, ev.member, ev.ts)
        age = latest[ev.member] - ev.ts
    else:
        age = ev.ts.max() - ev.ts
    # float32 throughout (the weights are float32): half the memory traffic of float64, and the
    # result differs by < 1e-7
    return np.exp2(age.astype(np.float32) * np.float32(-1.0 / half_life))


def seen_matrix(ds: Dataset) -> sp.csr_matrix:
    """Binary members x items: what each member already interacted with (excluded when ranking)."""
    m = sp.csr_matrix((np.ones(len(ds.events), dtype=np.float32), (ds.events.member, ds.events.item)),
                      shape=(ds.n_members, ds.n_items))
    m.sum_duplicates()
    m.data[:] = 1
    return m


# --------------------------------------------------------------------------- splits


@dataclass
class Split:
    """Training events plus held-out (member, item) pairs to predict."""

    train: Dataset
    test_members: np.ndarray  # int32 member codes, one row per held-out pair
    test_items: np.ndarray  # int32 item codes

    def truth(self) -> sp.csr_matrix:
        m = sp.csr_matrix((np.ones(len(self.test_members), dtype=np.float32),
                           (self.test_members, self.test_items)),
                          shape=(self.train.n_members, self.train.n_items))
        m.sum_duplicates()
        m.data[:] = 1
        return m


def leave_last_out(ds: Dataset) -> Split:
    """Each member's last event (by time, ties by file order) is held out; members with one event
    keep it in training (nothing to learn from otherwise)."""
    ev = ds.events
    order = np.lexsort((np.arange(len(ev)), ev.ts, ev.member))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = ev.member[order][1:] != ev.member[order][:-1]
    counts = np.bincount(ev.member, minlength=ds.n_members)
    held = order[last & (counts[ev.member[order]] > 1)]
    mask = np.ones(len(ev), dtype=bool)
    mask[held] = False
    return _split(ds, mask, held)


def leave_random_out(ds: Dataset, seed: int = 0) -> Split:
    """Each member's held-out item is a seeded random one of their items (all their events on it),
    for data without a clock, where "last" would only mean last in the file. Members with one item
    keep it in training."""
    ev = ds.events
    if len(ev) == 0:
        return _split(ds, np.ones(0, dtype=bool), np.zeros(0, dtype=np.int64))
    held_pair, inverse = random_item_per_member(ds, seed)
    mask = ~held_pair[inverse]
    held = np.flatnonzero(~mask)
    _, first = np.unique(inverse[held], return_index=True)  # one test row per held-out pair
    return _split(ds, mask, held[first])


def leave_random_share(ds: Dataset, share: float = 0.2, seed: int = 0) -> Split:
    """A seeded random ``share`` of each member's distinct items held out (at least one, and at least
    one item left to train on): the usual protocol for data without a clock. Members with one item
    keep it in training."""
    if not 0 < share < 1:
        raise ValueError(f"the held-out share must be between 0 and 1, not {share}")
    ev = ds.events
    if len(ev) == 0:
        return _split(ds, np.ones(0, dtype=bool), np.zeros(0, dtype=np.int64))
    pairs, first_row, inverse = np.unique(ev.member.astype(np.int64) * ds.n_items + ev.item,
                                          return_index=True, return_inverse=True)
    member = pairs // max(ds.n_items, 1)
    order = np.lexsort((np.random.default_rng(seed).random(len(pairs)), member))
    counts = np.bincount(member, minlength=ds.n_members)
    starts = np.r_[0, np.cumsum(counts)][member[order]]
    rank = np.arange(len(order)) - starts  # position of each pair in its member's shuffled items
    n = counts[member[order]]
    take = np.where(n > 1, np.clip(np.rint(share * n), 1, n - 1), 0)
    held_pair = np.zeros(len(pairs), dtype=bool)
    held_pair[order[rank < take]] = True
    mask = ~held_pair[inverse.ravel()]
    return _split(ds, mask, first_row[held_pair])


def random_item_per_member(ds: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(per distinct member-item pair: held out?, each event's pair): one seeded random pair per
    member that has two or more items."""
    ev = ds.events
    pairs, inverse = np.unique(ev.member.astype(np.int64) * ds.n_items + ev.item, return_inverse=True)
    member = pairs // max(ds.n_items, 1)
    order = np.lexsort((np.random.default_rng(seed).random(len(pairs)), member))
    last = np.r_[member[order][1:] != member[order][:-1], True]
    chosen = order[last]
    chosen = chosen[np.bincount(member, minlength=ds.n_members)[member[chosen]] > 1]
    held = np.zeros(len(pairs), dtype=bool)
    held[chosen] = True
    return held, inverse.ravel()


def temporal(ds: Dataset, days: float) -> Split:
    """Events in the last ``days`` of the data are the test period; members must have training
    events to be scored, and only items they did not already have in training are targets."""
    ev = ds.events
    cut = ds.now - days * 86400
    mask = ev.ts <= cut
    return _split(ds, mask, np.flatnonzero(~mask))


def _split(ds: Dataset, train_mask: np.ndarray, held: np.ndarray) -> Split:
    train = ds.with_events(ds.events.subset(train_mask))
    tm, ti = ds.events.member[held], ds.events.item[held]
    # score only members known in training, and only items new to them
    has_train = np.bincount(train.events.member, minlength=ds.n_members) > 0
    seen = seen_matrix(train)
    new = np.asarray(seen[tm, ti]).ravel() == 0 if len(tm) else np.zeros(0, dtype=bool)
    keep = has_train[tm] & new
    return Split(train=train, test_members=tm[keep].astype(np.int32), test_items=ti[keep].astype(np.int32))


def holdout_split(ds: Dataset, members: np.ndarray, items: np.ndarray) -> Split:
    """An explicit holdout (member, item codes): all events train, the holdout is the test."""
    return Split(train=ds, test_members=members.astype(np.int32), test_items=items.astype(np.int32))
