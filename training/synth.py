"""A synthetic member mall in our input format, for demos, load tests and the end-to-end suite.

It is built to *exercise* the pipeline (Zipf popularity, categories and brands, log-normal prices,
stock-outs, off-shelf items, new launches with a recent burst, gold-only items, member tiers, taste
structure, co-purchases, repeat purchases, a diurnal clock), NOT to measure it: the structure is our
own invention, so any accuracy number on this data says nothing about real members. Never use it
for accuracy claims; use /work/shared/datasets for those.

Events are generated and written slice by slice (time order, about 500k events per slice) with
pyarrow writers, so 20M events take minutes and memory stays bounded by the member/item tables.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from service.model_bundle import EVENT_TYPES

CATEGORIES = (
    "cleanser", "toner", "serum", "moisturiser", "sunscreen", "face-mask", "lipstick", "foundation",
    "eyeshadow", "mascara", "perfume", "body-lotion", "shampoo", "conditioner", "hand-cream", "bath",
    "razor", "toothpaste", "tea", "coffee", "snacks", "chocolate", "baby-care", "pet-food", "vitamins",
    "t-shirt", "dress", "jeans", "jacket", "sneakers", "boots", "socks", "underwear", "bag", "wallet",
    "watch", "jewellery", "sunglasses", "phone-case", "earphones", "charger", "home-fragrance",
    "bedding", "towel", "kitchenware", "cup", "stationery", "toy", "gift-set", "sportswear",
)
#: Categories members buy again and again (drives the "buy again" structure).
CONSUMABLES = frozenset({"cleanser", "toner", "face-mask", "shampoo", "conditioner", "hand-cream",
                         "toothpaste", "tea", "coffee", "snacks", "chocolate", "baby-care",
                         "pet-food", "vitamins", "socks"})
TIERS = ("bronze", "silver", "gold", "platinum")
TIER_SHARE = (0.60, 0.25, 0.12, 0.03)
TIER_POINTS = (300.0, 2_000.0, 8_000.0, 30_000.0)  # median points per tier
# Local (UTC+8) hourly activity: quiet nights, a late-morning bump, an evening peak.
HOURLY = np.array([3, 2, 1.2, .8, .6, .6, .9, 1.6, 2.6, 3.6, 4.2, 4.3, 4.4, 4.0, 3.8, 3.7, 3.8, 4.0,
                   4.3, 5.0, 5.8, 6.2, 5.6, 4.2])
# An "action" is one intent on one item; it expands to events. Pattern -> event types, in order.
PATTERNS = ((0,), (1,), (0, 2), (0, 3), (0, 3, 4), (0, 4), (4,))  # view, click, fav, cart, purchase
# Chosen so events come out ~81.5% view, 8% click, 3% fav, 5% cart, 2.5% purchase (taobao-like);
# pattern 6 (purchase with no view) is "buy again" from the order list.
PATTERN_P = np.array([0.727, 0.08, 0.03, 0.04, 0.01, 0.008, 0.007])
PATTERN_P = PATTERN_P / PATTERN_P.sum()
NEW_DAYS = 14
SLICE_EVENTS = 500_000
DAY = 86_400


def generate(out_dir: str | Path, *, members: int, items: int, events: int, seed: int = 7,
             fmt: str = "csv", days: int = 30, now: int | None = None,
             progress: Callable[[int], object] | None = None) -> dict[str, Path]:
    """Write events/items/members.<csv|parquet> into ``out_dir``; return their paths.

    ``now`` (unix seconds) ends the event window; None means today's 00:00 UTC, so the same seed
    gives the same files all day (pass ``now`` for byte-identical output on any day).
    ``progress(n)`` is called with the number of events written after each slice.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if members < 1 or items < 1 or events < 0 or days < 1:
        raise ValueError("need members >= 1, items >= 1, events >= 0, days >= 1")
    now = int(now if now is not None else time.time() // DAY * DAY)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cat, mem, s_events = _mall(seed, members, items, now, days)
    paths = {name: out / f"{name}.{fmt}" for name in ("events", "items", "members")}
    _write_table(cat.table(), paths["items"], fmt)
    _write_table(mem.table(), paths["members"], fmt)
    with _Writer(paths["events"], fmt, _EVENT_SCHEMA) as writer:
        for table in _event_slices(s_events, events, days, now, cat, mem):
            writer.write(table)
            if progress is not None:
                progress(table.num_rows)
    return paths


def _mall(seed: int, members: int, items: int, now: int, days: int
          ) -> tuple[_Catalogue, _Members, np.random.SeedSequence]:
    """The catalogue and members of a seed (and the events' seed): shared by ``generate`` and
    ``hidden_tastes`` so the tastes are exactly those behind the generated events."""
    s_items, s_members, s_events = np.random.SeedSequence(seed).spawn(3)
    cat = _Catalogue(np.random.default_rng(s_items), items, now, days)
    mem = _Members(np.random.default_rng(s_members), members, now, cat)
    return cat, mem, s_events


@dataclass(frozen=True)
class Tastes:
    """The ground truth behind a generated mall (indices follow the written items/members files):
    what the simulator's members like. Never in the files, so no model can read it."""

    member_ids: list[str]
    tier: np.ndarray  # index into TIERS
    activity: np.ndarray  # relative visit rate (log-normal, higher tiers more active)
    pref_cat: np.ndarray  # (members, 3) favourite categories, strongest first
    pref_brand: np.ndarray  # favourite brand
    staple: np.ndarray  # the consumable item a member rebuys, -1 when none
    item_ids: list[str]
    item_cat: np.ndarray  # index into categories
    item_brand: np.ndarray  # index into brands
    popularity: np.ndarray  # the items' draw weight in the generator (0 for new launches)
    new: np.ndarray  # launched within NEW_DAYS of ``now``
    gold_only: np.ndarray
    buyable: np.ndarray  # in stock and on shelf
    categories: tuple[str, ...]
    brands: tuple[str, ...]


def hidden_tastes(*, members: int, items: int, seed: int = 7, days: int = 30, now: int) -> Tastes:
    """The tastes behind ``generate(...)`` called with the same arguments."""
    cat, mem, _ = _mall(seed, members, items, int(now), days)
    return Tastes(
        member_ids=mem.ids.to_pylist(), tier=mem.tier, activity=np.diff(mem.cum, prepend=0.0),
        pref_cat=mem.pref_cat, pref_brand=mem.pref_brand, staple=mem.staple,
        item_ids=cat.ids.to_pylist(), item_cat=cat.cat, item_brand=cat.brand,
        popularity=cat.weight, new=cat.new, gold_only=cat.gold_only,
        buyable=(cat.stock > 0) & cat.on_shelf, categories=CATEGORIES[: cat.n_cat],
        brands=tuple(f"brand{b:03d}" for b in range(cat.n_brand)))


_EVENT_SCHEMA = pa.schema([("member_id", pa.string()), ("item_id", pa.string()),
                           ("event", pa.string()), ("ts", pa.int64()), ("quantity", pa.int32())])


def _zipf(n: int, rng: np.random.Generator, exponent: float, offset: float) -> np.ndarray:
    """Zipf-like weights assigned to a random permutation (so popularity is not id order)."""
    w = (np.arange(n) + 1 + offset) ** -exponent
    return w[rng.permutation(n)]


def _ids(n: int, start: int) -> pa.Array:
    return pc.cast(pa.array(np.arange(start, start + n, dtype=np.int64)), pa.string())


class _Sampler:
    """Draw items by weight within groups (category, brand): one searchsorted, no Python loop."""

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int, tiebreak: np.ndarray):
        self.order = np.lexsort((tiebreak, group))  # by group, then tiebreak
        self.pos = np.empty_like(self.order)
        self.pos[self.order] = np.arange(len(self.order))
        self.cum = np.cumsum(weight[self.order])
        counts = np.bincount(group, minlength=n_groups)
        self.start = np.concatenate(([0], np.cumsum(counts)))
        padded = np.concatenate(([0.0], self.cum))
        self.lo, self.hi = padded[self.start[:-1]], padded[self.start[1:]]

    def draw(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = self.lo[g] + rng.random(len(g)) * (self.hi[g] - self.lo[g])
        idx = np.searchsorted(self.cum, x, side="right")
        idx = np.clip(idx, self.start[g], np.maximum(self.start[g + 1] - 1, self.start[g]))
        return self.order[idx]

    def near(self, item: np.ndarray, rng: np.random.Generator, g: np.ndarray) -> np.ndarray:
        """An item a few places away in the same group (same category and brand line)."""
        step = rng.geometric(0.45, len(item)) * np.where(rng.random(len(item)) < 0.5, -1, 1)
        idx = np.clip(self.pos[item] + step, self.start[g], self.start[g + 1] - 1)
        return self.order[idx]


class _Catalogue:
    def __init__(self, rng: np.random.Generator, n: int, now: int, days: int):
        self.n, self.now = n, now
        self.n_cat = int(np.clip(n // 20, min(n, 2), len(CATEGORIES)))
        self.n_brand = int(np.clip(n // 5, min(n, 2), 200))
        cat_w = _zipf(self.n_cat, rng, 0.8, 1.0)
        self.cat = np.concatenate([np.arange(self.n_cat),
                                   rng.choice(self.n_cat, n - self.n_cat, p=cat_w / cat_w.sum())])
        rng.shuffle(self.cat)
        # brands live mostly in one home category
        home = rng.choice(self.n_cat, self.n_brand, p=cat_w / cat_w.sum())
        by_home = np.argsort(home, kind="stable")
        start = np.searchsorted(home[by_home], np.arange(self.n_cat + 1))
        cnt = start[1:] - start[:-1]
        own = start[self.cat] + (rng.random(n) * np.maximum(cnt[self.cat], 1)).astype(np.int64)
        own_brand = by_home[np.minimum(own, self.n_brand - 1)]
        use_own = (cnt[self.cat] > 0) & (rng.random(n) < 0.8)
        self.brand = np.where(use_own, own_brand, rng.integers(0, self.n_brand, n))
        median = np.exp(rng.uniform(np.log(12), np.log(900), self.n_cat))
        consumable = np.array([c in CONSUMABLES for c in CATEGORIES[: self.n_cat]])
        median[consumable] /= 3  # everyday items are cheap; some under 10 yuan
        self.consumable = consumable
        self.price = np.maximum(np.round(median[self.cat] * rng.lognormal(0, 0.6, n), 1), 0.5)
        r = rng.random(n)
        self.stock = np.where(r < 0.05, 0, np.ceil(rng.lognormal(4, 1.3, n))).astype(np.int64)
        self.on_shelf = rng.random(n) >= 0.03
        self.new = rng.random(n) < 0.05
        self.new[rng.integers(0, n)] = True  # at least one launch, even in a tiny mall
        self.new[0] = False if self.new.all() else self.new[0]  # and at least one older item
        old_to = now - max(days, NEW_DAYS) * DAY - DAY
        launched = rng.integers(old_to - 730 * DAY, old_to, n)
        launched[self.new] = now - rng.integers(3600, NEW_DAYS * DAY, self.new.sum())
        self.launched_at = launched
        self.gold_only = (rng.random(n) < 0.004 * self.price / np.median(self.price)) & ~self.new
        self.gold_only[int(np.argmax(self.price))] = True
        self.sale = rng.random(n) < 0.12
        gift = rng.random(n) < 0.08
        if "gift-set" in CATEGORIES[: self.n_cat]:
            gift |= self.cat == CATEGORIES.index("gift-set")
        self.gift = gift
        base = _zipf(n, rng, 1.05, 3.0) * np.where(self.on_shelf, 1.0, 0.3)
        self.weight = np.where(self.new, 0.0, base)  # new items are drawn from their own pool
        tiebreak = -base
        self.by_cat = _Sampler(self.cat, self.weight, self.n_cat, self.brand * 1e6 + tiebreak)
        self.by_brand = _Sampler(self.brand, self.weight, self.n_brand, tiebreak)
        self.global_cum = np.cumsum(self.weight)
        comp_cat = (np.arange(self.n_cat) + rng.integers(1, max(self.n_cat, 2), self.n_cat)) % self.n_cat
        self.complement = self.by_cat.draw(comp_cat[self.cat], rng)
        self.new_items = np.flatnonzero(self.new)[np.argsort(launched[self.new], kind="stable")]
        self.new_launch = launched[self.new_items]
        self.new_cum = np.cumsum(base[self.new_items] * 3 + base.mean())
        self.ids = _ids(n, 100_001)

    def draw_global(self, k: int, rng: np.random.Generator) -> np.ndarray:
        x = rng.random(k) * self.global_cum[-1]
        return np.minimum(np.searchsorted(self.global_cum, x, side="right"), self.n - 1)

    def draw_new(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A new launch already launched at time t (recent ones pull most): -1 when none yet."""
        if not len(self.new_items):
            return np.full(len(t), -1)
        avail = np.searchsorted(self.new_launch, t, side="right")
        top = self.new_cum[np.maximum(avail - 1, 0)]
        idx = np.searchsorted(self.new_cum, rng.random(len(t)) * top, side="right")
        return np.where(avail > 0, self.new_items[np.minimum(idx, np.maximum(avail - 1, 0))], -1)

    def table(self) -> pa.Table:
        words = ("new", "sale", "gift", "gold-only")
        code = self.new * 1 + self.sale * 2 + self.gift * 4 + self.gold_only * 8
        combos = [" ".join(w for b, w in enumerate(words) if c >> b & 1) for c in range(16)]
        cats = pa.array(CATEGORIES[: self.n_cat]).take(pa.array(self.cat))
        brands = pa.array([f"brand{b:03d}" for b in range(self.n_brand)]).take(pa.array(self.brand))
        return pa.table({
            "item_id": self.ids, "category": cats, "brand": brands, "price": self.price,
            "stock": self.stock, "on_shelf": self.on_shelf, "launched_at": self.launched_at,
            "tags": pa.array(combos).take(pa.array(code)),
        })


class _Members:
    def __init__(self, rng: np.random.Generator, n: int, now: int, cat: _Catalogue):
        self.n = n
        self.tier = rng.choice(len(TIERS), n, p=TIER_SHARE)
        self.points = np.round(np.array(TIER_POINTS)[self.tier] * rng.lognormal(0, 0.8, n))
        self.joined_at = now - rng.integers(DAY, 3 * 365 * DAY, n)
        activity = rng.lognormal(0, 1.3, n) * np.array([1.0, 1.3, 1.6, 2.0])[self.tier]
        self.cum = np.cumsum(activity)
        cat_w = np.bincount(cat.cat, weights=cat.weight, minlength=cat.n_cat) + 1e-9
        self.pref_cat = rng.choice(cat.n_cat, (n, 3), p=cat_w / cat_w.sum())
        self.pref_brand = cat.brand[cat.by_cat.draw(self.pref_cat[:, 0], rng)]
        cons = cat.consumable[self.pref_cat]
        first = self.pref_cat[np.arange(n), np.argmax(cons, axis=1)]
        self.staple = np.where(cons.any(axis=1), cat.by_cat.draw(first, rng), -1)
        self.ids = _ids(n, 5_000_001)

    def draw(self, k: int, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cum, rng.random(k) * self.cum[-1], side="right"),
                          self.n - 1)

    def table(self) -> pa.Table:
        return pa.table({"member_id": self.ids, "tier": pa.array(TIERS).take(pa.array(self.tier)),
                         "points": self.points.astype(np.int64), "joined_at": self.joined_at})


def _event_slices(seq: np.random.SeedSequence, total: int, days: int, now: int, cat: _Catalogue,
                  mem: _Members) -> Iterator[pa.Table]:
    """Yield one Arrow table per time slice, events sorted by time; exactly ``total`` rows."""
    start = now - days * DAY
    minute = np.arange(days * 1440)
    local_hour = ((start // 60 + minute) // 60 + 8) % 24
    weekday = ((start // 60 + minute) // 1440 + 3) % 7  # 1970-01-01 was a Thursday
    intensity = HOURLY[local_hour] * np.where(weekday >= 5, 1.15, 1.0) * (1 + 0.1 * minute / len(minute))
    cum = np.cumsum(intensity)
    n_slices = max(days, math.ceil(total / SLICE_EVENTS))
    edges = np.unique(np.linspace(0, len(minute), n_slices + 1).astype(np.int64))
    at_edge = np.concatenate(([0.0], cum))[edges] / cum[-1]
    counts = np.diff(np.round(at_edge * total).astype(np.int64))
    for (lo, hi), n, s in zip(zip(edges[:-1], edges[1:], strict=True), counts, seq.spawn(len(counts)),
                              strict=True):
        if n > 0:
            yield _slice(np.random.default_rng(s), int(n), start, intensity[lo:hi], int(lo), now, cat, mem)


def _slice(rng: np.random.Generator, target: int, start: int, intensity: np.ndarray, first_min: int,
           now: int, cat: _Catalogue, mem: _Members) -> pa.Table:
    parts: list[dict[str, np.ndarray]] = []
    have = 0
    while have < target:
        n_sess = int((target - have) / 3.0) + 8
        part = _sessions(rng, n_sess, start, intensity, first_min, now, cat, mem)
        parts.append(part)
        have += len(part["ts"])
    ev = {k: np.concatenate([p[k] for p in parts])[:target] for k in parts[0]}
    order = np.argsort(ev["ts"], kind="stable")
    return pa.table({
        "member_id": mem.ids.take(pa.array(ev["member"][order])),
        "item_id": cat.ids.take(pa.array(ev["item"][order])),
        "event": pa.array(EVENT_TYPES).take(pa.array(ev["event"][order])),
        "ts": ev["ts"][order], "quantity": ev["quantity"][order].astype(np.int32),
    }, schema=_EVENT_SCHEMA)


def _sessions(rng: np.random.Generator, n: int, start: int, intensity: np.ndarray, first_min: int,
              now: int, cat: _Catalogue, mem: _Members) -> dict[str, np.ndarray]:
    """n browsing sessions: a member, an anchor item from their taste, then actions around it."""
    member = mem.draw(n, rng)
    icum = np.cumsum(intensity)
    minute = np.searchsorted(icum, rng.random(n) * icum[-1], side="right") + first_min
    t0 = start + minute * 60 + rng.integers(0, 60, n)
    anchor = _taste(rng, member, t0, now, cat, mem)
    length = np.minimum(rng.geometric(0.35, n), 15)
    sess = np.repeat(np.arange(n), length)
    m = member[sess]
    gaps = rng.exponential(45.0, len(sess)) + 2
    csum = np.cumsum(gaps)
    first = np.concatenate(([0], np.cumsum(length)[:-1]))
    t = t0[sess] + (csum - (csum[first] - gaps[first])[sess]).astype(np.int64)
    a = anchor[sess]
    r = rng.random(len(sess))
    near = cat.by_cat.near(a, rng, cat.cat[a])
    fresh = _taste(rng, m, t, now, cat, mem)
    item = np.select([r < 0.25, r < 0.70, r < 0.85], [a, near, cat.complement[a]], fresh)
    item = np.where(cat.launched_at[item] > t, a, item)  # nothing before its launch
    item[first] = a[first]
    pat = rng.choice(len(PATTERNS), len(sess), p=PATTERN_P)
    staple = mem.staple[m]
    item = np.where((pat == 6) & (staple >= 0) & (cat.launched_at[np.maximum(staple, 0)] <= t),
                    staple, item)
    buy = pat >= 3
    blocked = (cat.stock[item] == 0) | ~cat.on_shelf[item]
    gold_blocked = cat.gold_only[item] & (mem.tier[m] < TIERS.index("gold")) & (pat >= 4)
    pat = np.where((buy & blocked) | gold_blocked, 0, pat)
    # expand actions to events
    n_ev = np.array([len(p) for p in PATTERNS])[pat]
    act = np.repeat(np.arange(len(pat)), n_ev)
    pos = np.arange(len(act)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
    table = np.full((len(PATTERNS), 3), 0, dtype=np.uint8)
    for i, p in enumerate(PATTERNS):
        table[i, : len(p)] = p
    event = table[pat[act], pos]
    ts = t[act] + pos * (5 + rng.exponential(30.0, len(act))).astype(np.int64)
    ev_item = item[act]
    qty = np.ones(len(act), dtype=np.int64)
    bought = event == EVENT_TYPES.index("purchase")
    extra = bought & cat.consumable[cat.cat[ev_item]] & (rng.random(len(act)) < 0.3)
    qty[extra] += np.minimum(rng.geometric(0.6, int(extra.sum())), 4)
    return {"member": m[act], "item": ev_item, "event": event, "ts": np.minimum(ts, now - 1),
            "quantity": qty}


def _taste(rng: np.random.Generator, member: np.ndarray, t: np.ndarray, now: int, cat: _Catalogue,
           mem: _Members) -> np.ndarray:
    """An item this member would look at: mostly their categories/brand, some global, new launches."""
    k = len(member)
    u = rng.random(k)
    which = rng.choice(3, k, p=(0.6, 0.3, 0.1))
    item = cat.by_cat.draw(mem.pref_cat[member, which], rng)
    item = np.where((u >= 0.55) & (u < 0.70), cat.by_brand.draw(mem.pref_brand[member], rng), item)
    item = np.where(u >= 0.70, cat.draw_global(k, rng), item)
    new = cat.draw_new(t, rng)
    recent = (u >= 0.90) & (t >= now - NEW_DAYS * DAY) & (new >= 0)
    item = np.where(recent, new, item)
    early = cat.launched_at[item] > t  # only where a group holds nothing launched yet
    return np.where(early, cat.draw_global(k, rng), item)


def _write_table(table: pa.Table, path: Path, fmt: str) -> None:
    with _Writer(path, fmt, table.schema) as w:
        w.write(table)


class _Writer:
    """CSV (plain, unquoted: our values never hold commas) or Parquet, written chunk by chunk."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema):
        if fmt == "csv":
            path.write_text(",".join(schema.names) + "\n")  # an unquoted header, like our data
            self._f = open(path, "ab")  # noqa: SIM115 (closed in __exit__)
            self._w = pacsv.CSVWriter(self._f, schema, write_options=pacsv.WriteOptions(
                include_header=False, quoting_style="none"))
        else:
            self._w = pq.ParquetWriter(str(path), schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self._w.write_table(table)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._w.close()
        if hasattr(self, "_f"):
            self._f.close()
