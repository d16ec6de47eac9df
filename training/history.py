"""Per-member history shipped in the bundle: what each member bought and last touched.

The service needs it for "not bought recently", repeat purchases that are due on the delivery page
and the recent items that seed "similar" candidates. To keep the bundle bounded at millions of
members, every purchased pair is kept but only the `keep_recent` most recent other pairs.
"""

from __future__ import annotations

import numpy as np

from service.model_bundle import EVENT_TYPES
from training.dataset import PURCHASE, Dataset

NEVER = -1


def member_history(ds: Dataset, keep_recent: int = 20) -> dict[str, np.ndarray]:
    """CSR-shaped arrays over members, matching service.model_bundle.ARRAYS['history_*']."""
    ev = ds.events
    n_members, n_items = ds.n_members, ds.n_items
    if len(ev) == 0:
        return _empty(n_members)
    key = ev.member.astype(np.int64) * n_items + ev.item
    order, skey = stable_argsort(key)
    starts = np.flatnonzero(np.r_[True, skey[1:] != skey[:-1]])
    ts, event = ev.ts[order], ev.event[order]
    bought = event == PURCHASE
    pair_member = (skey[starts] // n_items).astype(np.int64)
    pair_item = (skey[starts] % n_items).astype(np.int32)
    last_ts = np.maximum.reduceat(ts, starts)
    mask = np.bitwise_or.reduceat((1 << event.astype(np.uint8)).astype(np.uint8), starts)
    # purchase events (orders), not units: the service derives repurchase intervals from them
    purchases = np.add.reduceat(bought.astype(np.int32), starts)
    first_buy = np.minimum.reduceat(np.where(bought, ts, np.iinfo(np.int64).max), starts)
    first_buy[purchases == 0] = NEVER

    # keep purchases + the most recent others per member (pairs are grouped by member already)
    # one int64 sort key (member, newest first): cheaper than np.lexsort over two columns
    age = (last_ts.max() - last_ts).astype(np.int64)
    by_recency, _ = stable_argsort(pair_member * (int(age.max()) + 1) + age)
    group_start = np.flatnonzero(np.r_[True, pair_member[by_recency][1:] != pair_member[by_recency][:-1]])
    rank = np.arange(len(by_recency)) - np.repeat(group_start, np.diff(np.r_[group_start, len(by_recency)]))
    keep_sorted = (rank < keep_recent) | (purchases[by_recency] > 0)
    keep = by_recency[keep_sorted]  # grouped by member, most recent first
    counts = np.bincount(pair_member[keep], minlength=n_members)
    indptr = np.zeros(n_members + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    assert len(EVENT_TYPES) <= 8  # the mask is one byte
    return {
        "history_indptr": indptr,
        "history_items": pair_item[keep],
        "history_last_ts": last_ts[keep].astype(np.int64),
        "history_events": mask[keep].astype(np.uint8),
        "history_purchases": purchases[keep],
        "history_first_purchase_ts": first_buy[keep].astype(np.int64),
    }


def stable_argsort(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(np.argsort(key, kind="stable"), key sorted) for non-negative int64 keys, cheaper than a
    general stable sort on large inputs.

    When key and row number fit in 63 bits together, they are packed into one int64 and sorted by
    value (NumPy's SIMD sort, no index array carried along); ties keep row order because the row
    number is in the low bits. Otherwise the plain stable argsort.
    """
    n = len(key)
    bits = max(n - 1, 1).bit_length()
    if n == 0 or int(key.min()) < 0 or int(key.max()).bit_length() + bits > 63:
        order = np.argsort(key, kind="stable")
        return order, key[order]
    packed = np.sort((key.astype(np.int64) << bits) | np.arange(n, dtype=np.int64))
    return packed & ((1 << bits) - 1), packed >> bits


def _empty(n_members: int) -> dict[str, np.ndarray]:
    return {
        "history_indptr": np.zeros(n_members + 1, dtype=np.int64),
        "history_items": np.zeros(0, dtype=np.int32),
        "history_last_ts": np.zeros(0, dtype=np.int64),
        "history_events": np.zeros(0, dtype=np.uint8),
        "history_purchases": np.zeros(0, dtype=np.int32),
        "history_first_purchase_ts": np.zeros(0, dtype=np.int64),
    }
