"""Small in-memory datasets for unit tests of training code (no files, no ../shared)."""

from __future__ import annotations

import numpy as np

from service.model_bundle import EVENT_TYPES, ItemTable, MemberTable
from training.dataset import Dataset, Interactions

DAY = 86400


def items_table(n: int, categories: int = 4, seed: int = 0) -> ItemTable:
    rng = np.random.default_rng(seed)
    ids = np.array([f"i{k}" for k in range(n)])
    return ItemTable(
        item_id=ids,
        category=np.array([f"c{k % categories}" for k in range(n)]),
        brand=np.array([f"b{k % 3}" for k in range(n)]),
        price=rng.uniform(5, 200, n).round(2),
        stock=np.where(np.arange(n) % 10 == 9, 0, 5).astype(np.int64),
        on_shelf=np.arange(n) % 17 != 16,
        launched_at=np.full(n, -1, dtype=np.int64),
        tags=np.full(n, "", dtype=object).astype(str),
    )


def make_dataset(events: list[tuple[str, str, str, int]] | None = None, n_items: int = 8,
                 members: int = 0, seed: int = 0) -> Dataset:
    """Explicit (member, item, event, ts) rows, or ``members`` planted members when events is None.

    Planted: member m likes category m % 4 and mostly touches its items, buying some.
    """
    items = items_table(n_items, seed=seed)
    if events is None:
        rng = np.random.default_rng(seed)
        events = []
        cats = np.arange(n_items) % 4
        for m in range(members):
            own = np.flatnonzero(cats == m % 4)
            for _ in range(12):
                item = int(rng.choice(own)) if rng.random() < 0.85 else int(rng.integers(n_items))
                ev = EVENT_TYPES[int(rng.choice(5, p=[0.6, 0.15, 0.08, 0.1, 0.07]))]
                events.append((f"m{m}", f"i{item}", ev, int(rng.integers(0, 30 * DAY))))
    index = {k: i for i, k in enumerate(items.item_id)}
    member_ids = np.array(sorted({e[0] for e in events}, key=lambda s: (len(s), s)))
    mindex = {k: i for i, k in enumerate(member_ids)}
    ev = Interactions(
        member=np.array([mindex[e[0]] for e in events], dtype=np.int32),
        item=np.array([index[e[1]] for e in events], dtype=np.int32),
        event=np.array([EVENT_TYPES.index(e[2]) for e in events], dtype=np.uint8),
        ts=np.array([e[3] for e in events], dtype=np.int64),
        member_ids=member_ids,
        item_ids=items.item_id,
    )
    n = len(member_ids)
    tiers = np.array(["gold" if k % 5 == 0 else "bronze" for k in range(n)])
    return Dataset(ev, items, MemberTable(member_ids, tiers, np.full(n, 100.0)))
