"""The events' clock is read as none (every ts equal), order (ts are positions) or time (seconds),
and the random-share split holds out what it says."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tests.factories import make_dataset
from training.dataset import Dataset, leave_random_share, read_clock


def with_times(ds: Dataset, ts: np.ndarray) -> Dataset:
    return ds.with_events(replace(ds.events, ts=np.asarray(ts, dtype=np.int64)))


def positions(ds: Dataset) -> np.ndarray:
    """Each member's events numbered 0, 1, 2, ... in file order (amazon-beauty's ts)."""
    ev = ds.events
    order = np.argsort(ev.member, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(ev.member, minlength=ds.n_members))]
    rank = np.empty(len(ev), dtype=np.int64)
    rank[order] = np.arange(len(ev)) - starts[ev.member[order]]
    return rank


def test_all_equal_is_no_clock() -> None:
    ds = make_dataset(members=60, n_items=40, seed=1)
    clock = read_clock(with_times(ds, np.zeros(len(ds.events))).events)
    assert clock.kind == "none" and not clock.has_order
    assert "ts 0" in clock.line and "random" in clock.line


def test_positions_are_order_only() -> None:
    ds = make_dataset(members=60, n_items=40, seed=2)
    clock = read_clock(with_times(ds, positions(ds)).events)
    assert clock.kind == "order" and clock.has_order
    assert "order only" in clock.line


def test_seconds_are_time() -> None:
    ds = make_dataset(members=60, n_items=40, seed=3)
    assert read_clock(ds.events).kind == "time"
    # small relative seconds (instacart-like: days between orders) are still time, not positions
    rng = np.random.default_rng(0)
    relative = rng.integers(0, 30 * 86400, len(ds.events))
    assert read_clock(with_times(ds, relative).events).kind == "time"


def test_random_share_holds_out_a_share_of_each_members_items() -> None:
    ds = make_dataset(members=80, n_items=60, seed=4)
    split = leave_random_share(ds, 0.2, seed=7)
    ev = ds.events
    items_of = {m: set(ev.item[ev.member == m].tolist()) for m in np.unique(ev.member).tolist()}
    held: dict[int, set[int]] = {}
    for m, i in zip(split.test_members.tolist(), split.test_items.tolist(), strict=True):
        held.setdefault(m, set()).add(i)
    for m, items in held.items():
        assert items <= items_of[m]
        assert 1 <= len(items) <= max(1, round(0.2 * len(items_of[m])))
        train_items = set(split.train.events.item[split.train.events.member == m].tolist())
        assert train_items and not (train_items & items)
    again = leave_random_share(ds, 0.2, seed=7)
    assert np.array_equal(again.test_items, split.test_items)
    assert not np.array_equal(leave_random_share(ds, 0.2, seed=8).test_items, split.test_items)
