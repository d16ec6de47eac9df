"""The simulated mall: its members (who comes when, what they search for, click and buy) and its
frontend (``Mall``), which asks the server for the slots and reports back what the members did.

Ground truth is the synthetic mall's own (``training.synth.hidden_tastes``): each member's favourite
categories, brand and staple, each item's category, brand and popularity. A member's taste is a
vector over categories and brands, an item is the one-hot of its category and brand, and

    attractiveness(m, i) = sigmoid(BASE + TASTE * (taste_m . item_i) + POPULARITY * pop_z(i)
                                   + STAPLE * [i is m's staple] + NEW * [i is new] + intent)

where ``intent`` rewards items matching what the page is for (the searched category or brand, the
delivered order's categories). Clicks follow a position-based model: a member examines position
``p`` (0-based) with probability ``1 / (1 + p) ** EXAMINATION`` and clicks an examined item with its
attractiveness. A click becomes a purchase with ``BUY * attractiveness`` when the item can be bought
(in stock, on shelf, gold-only items for gold members and up). Purchases are delivered a day or
two later, which brings the member to the delivery page.

The numbers are our invention: this world tests that the loop works (served -> clicked -> logged
-> retrained -> served better for *these* rules), never how well a model would do with real members.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import groupby
from typing import Any, Protocol

import numpy as np

from service.api.gen.mallrec.v1 import recommender_pb2 as pb
from service.client import Client
from service.errors import MallrecError
from training.synth import HOURLY, TIERS, Tastes

BASE = -3.6
TASTE = 2.4
POPULARITY = 0.3
STAPLE = 1.5
NEW = 0.4
SEARCH_INTENT = 2.0  # item in the searched category or brand
ORDER_INTENT = 1.0  # item in a category of the delivered order (not one of its items)
EXAMINATION = 0.9
BUY = 0.3
#: Taste weights: the three favourite categories (strongest first), then the favourite brand.
CATEGORY_TASTE = (1.0, 0.6, 0.35)
BRAND_TASTE = 0.8
DAILY_SHARE = 0.2  # members who check in every day
VISIT_RATE = 0.12  # the others' daily visit probability at mean activity
MAX_VISIT_P = 0.6
SEARCH_P = 0.4  # a visit includes a search
QUERY_CATEGORY_P = 0.7  # a search names a category (else the favourite brand)
ORGANIC_P = 0.1  # a visit buys something found without a recommendation
COUNT = 10  # items the frontend asks for per slot
WINDOW = 600  # seconds: visits in one window share the server's clock
WINDOWS = 86_400 // WINDOW
LOCAL_OFFSET_H = 8  # the generator's activity curve is local time, UTC+8
GOLD = TIERS.index("gold")


@dataclass(frozen=True)
class Visit:
    """One member's visit in a day's window: the pages they open, in order."""

    member: int
    window: int
    delivery: tuple[int, ...] = ()  # items delivered today: the delivery page shows them
    check_in: bool = True
    query: str = ""  # "" when they do not search
    target: tuple[str, int] | None = None  # ("category" | "brand", index) the query names

    def pages(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """(slot, query, delivered items) of each page the member opens, in order."""
        return ([("delivery", "", self.delivery)] if self.delivery else []) + (
            [("check_in", "", ())] if self.check_in else []) + (
            [("search_box", self.query, ())] if self.query else [])


class World:
    """The hidden side of the simulation: tastes, visits, the choice model, orders in transit."""

    def __init__(self, tastes: Tastes, seed: int) -> None:
        self.tastes = t = tastes
        self.seed = seed
        self._deliveries: dict[int, dict[int, list[int]]] = defaultdict(dict)
        n_cat, n_members = len(t.categories), len(t.member_ids)
        self.n_cat = n_cat
        taste = np.zeros((n_members, n_cat + len(t.brands)), dtype=np.float32)
        rows = np.arange(n_members)
        for k, w in enumerate(CATEGORY_TASTE):
            np.add.at(taste, (rows, t.pref_cat[:, k]), w)
        taste[rows, n_cat + t.pref_brand] += BRAND_TASTE
        self.taste = taste
        pop = np.log(t.popularity + 1e-12)
        old = t.popularity > 0
        z = np.zeros(len(pop))
        z[old] = (pop[old] - pop[old].mean()) / (pop[old].std() or 1.0)
        self.pop_z = z
        self.index = {item_id: i for i, item_id in enumerate(t.item_ids)}
        rng = np.random.default_rng([self.seed, 0])
        act = t.activity / t.activity.mean()
        self.daily = rng.random(n_members) < DAILY_SHARE
        self.visit_p = np.clip(VISIT_RATE * act, 0.01, MAX_VISIT_P)
        hour_w = np.roll(HOURLY, -LOCAL_OFFSET_H)  # UTC hour h is local hour h + 8
        self.window_p = np.repeat(hour_w / hour_w.sum() / (WINDOWS // 24), WINDOWS // 24)

    # ------------------------------------------------------------------ the day's visits

    def rng(self, day: int, member: int) -> np.random.Generator:
        """One member's randomness for one day: the same whatever order the server answers in."""
        return np.random.default_rng([self.seed, day, member, 1])

    def plan(self, day: int) -> list[Visit]:
        """Who comes on ``day`` (daily members, random visitors, those with a delivery), sorted by
        window."""
        t = self.tastes
        rng = np.random.default_rng([self.seed, day, 0])
        n = len(t.member_ids)
        comes = self.daily | (rng.random(n) < self.visit_p)
        window = rng.choice(WINDOWS, n, p=self.window_p)
        search = rng.random(n) < SEARCH_P
        by_category = rng.random(n) < QUERY_CATEGORY_P
        which = rng.choice(3, n, p=(0.6, 0.3, 0.1))
        delivered = self._deliveries.pop(day, {})
        visits = []
        for row in np.flatnonzero(comes | np.isin(np.arange(n), list(delivered))):
            m = int(row)
            query, target = "", None
            if comes[m] and search[m]:
                if by_category[m]:
                    c = int(t.pref_cat[m, which[m]])
                    query, target = t.categories[c], ("category", c)
                else:
                    b = int(t.pref_brand[m])
                    query, target = t.brands[b], ("brand", b)
            visits.append(Visit(m, int(window[m]), tuple(delivered.get(m, ())[:20]), bool(comes[m]),
                                query, target))
        visits.sort(key=lambda v: (v.window, v.member))
        return visits

    # ------------------------------------------------------------------ the choice model

    def attractiveness(self, member: int, items: np.ndarray, *, target: tuple[str, int] | None = None,
                       order: tuple[int, ...] = ()) -> np.ndarray:
        """P(click | examined) for each of ``items`` shown to ``member`` on a page with that intent."""
        t = self.tastes
        items = np.asarray(items, dtype=np.int64)
        taste = self.taste[member]
        logit = (BASE + TASTE * (taste[t.item_cat[items]] + taste[self.n_cat + t.item_brand[items]])
                 + POPULARITY * self.pop_z[items] + STAPLE * (items == t.staple[member])
                 + NEW * t.new[items])
        if target is not None:
            kind, value = target
            hit = (t.item_cat[items] if kind == "category" else t.item_brand[items]) == value
            logit = logit + SEARCH_INTENT * hit
        if order:
            ordered = np.asarray(order)
            same = np.isin(t.item_cat[items], t.item_cat[ordered]) & ~np.isin(items, ordered)
            logit = logit + ORDER_INTENT * same
        return 1.0 / (1.0 + np.exp(-logit))

    @staticmethod
    def examination(n: int) -> np.ndarray:
        return 1.0 / (1.0 + np.arange(n)) ** EXAMINATION

    def can_buy(self, member: int, items: np.ndarray) -> np.ndarray:
        t = self.tastes
        return t.buyable[items] & (~t.gold_only[items] | (t.tier[member] >= GOLD))

    def choose(self, member: int, items: np.ndarray, attract: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
        """(clicked, bought) masks for a slot's items in the order shown."""
        clicked = rng.random(len(items)) < self.examination(len(items)) * attract
        bought = clicked & (rng.random(len(items)) < BUY * attract) & self.can_buy(member, items)
        return clicked, bought

    def organic(self, member: int, rng: np.random.Generator) -> int:
        """An item bought without a recommendation on this visit (a taste draw), or -1."""
        if rng.random() >= ORGANIC_P:
            return -1
        items = np.flatnonzero(self.can_buy(member, np.arange(len(self.tastes.item_ids))))
        if not len(items):
            return -1
        w = self.attractiveness(member, items) ** 2
        return int(rng.choice(items, p=w / w.sum()))

    def order(self, member: int, items: list[int], day: int, rng: np.random.Generator) -> None:
        """Purchases of ``day`` arrive one or two days later (the delivery page then shows them)."""
        if items:
            arrives = day + 1 + int(rng.random() < 0.5)
            self._deliveries[arrives].setdefault(member, []).extend(items)


# ---------------------------------------------------------------------- the frontend


class SimulateError(MallrecError):
    """A simulation we cannot run as asked (bad argument, used output folder, server failure)."""


class Clock(Protocol):
    """The server's injected clock: the frontend sets ``now`` before each window's visits."""

    now: float


@dataclass
class Counts:
    impressions: int = 0
    clicks: int = 0
    purchases: int = 0  # bought after a click in the slot (the simulator knows; the report infers)

    def add(self, other: Counts) -> None:
        self.impressions += other.impressions
        self.clicks += other.clicks
        self.purchases += other.purchases

    def as_dict(self) -> dict[str, Any]:
        n = self.impressions
        return {**asdict(self), "ctr": round(self.clicks / n, 6) if n else None,
                "purchase_rate": round(self.purchases / n, 6) if n else None}


Cell = tuple[int, str, str, str]  # day, slot, experiment, arm


@dataclass
class DayInfo:
    date: str
    visits: int = 0
    requests: int = 0
    organic_purchases: int = 0
    degraded: int = 0  # responses the server marked degraded (it does not log their served items)
    degraded_items: int = 0
    serve_seconds: float = 0.0
    retrain: dict[str, Any] | None = None


class Mall:
    """The frontend of the simulated mall: asks for slots, reports what members do."""

    def __init__(self, world: World, client: Client, clock: Clock) -> None:
        self.world = world
        self.client = client
        self.clock = clock
        self.cells: dict[Cell, Counts] = defaultdict(Counts)
        self.versions: dict[int, Counter[str]] = defaultdict(Counter)
        self.days: dict[int, DayInfo] = {}
        self.sent: Counter[str] = Counter()  # events TrackEvents stored, by kind

    async def day(self, day: int, start: int, progress: Callable[[str], object] = lambda text: None
                  ) -> DayInfo:
        """Every visit of ``day`` (starting at ``start``), window by window on the server's clock."""
        info = self.days[day] = DayInfo(time.strftime("%Y-%m-%d", time.gmtime(start)))
        began = time.perf_counter()
        visits = self.world.plan(day)
        info.visits = len(visits)
        seen = 0
        for window, group in groupby(visits, key=lambda v: v.window):
            batch = list(group)
            seen += len(batch)
            progress(f"day {day}: {time.strftime('%H:%M', time.gmtime(window * WINDOW))} UTC, "
                     f"{seen:,}/{len(visits):,} visits")
            at = start + window * WINDOW
            self.clock.now = at  # the window's visits run concurrently, at one server time
            done = await asyncio.gather(*(self._visit(v, day, at) for v in batch))
            await self._track([e for events in done for e in events])
        info.serve_seconds = round(time.perf_counter() - began, 2)
        return info

    async def _visit(self, v: Visit, day: int, at: int) -> list[pb.Event]:
        """One member's pages in order; the events they cause (clicks name the slot and request)."""
        w, t = self.world, self.world.tastes
        rng = w.rng(day, v.member)
        member = t.member_ids[v.member]
        events: list[pb.Event] = []
        bought: list[int] = []
        for n, (slot, query, order) in enumerate(v.pages()):
            resp = await self.client.recommend(member, slot, COUNT, query=query,
                                               order_items=[t.item_ids[i] for i in order])
            self.days[day].requests += 1
            self.versions[day][resp.model_version] += 1
            cell = self.cells[(day, slot, resp.experiment, resp.arm)]
            items = np.array([w.index[i.item_id] for i in resp.items], dtype=np.int64)
            cell.impressions += len(items)
            if resp.degraded:
                self.days[day].degraded += 1
                self.days[day].degraded_items += len(items)
            if not len(items):
                continue
            attract = w.attractiveness(v.member, items, target=v.target if slot == "search_box" else None,
                                       order=order)
            clicked, buys = w.choose(v.member, items, attract, rng)
            cell.clicks += int(clicked.sum())
            cell.purchases += int(buys.sum())
            for pos in np.flatnonzero(clicked):
                ts = at + 60 * n + int(rng.integers(5, 60))
                events.append(self._event(member, t.item_ids[items[pos]], "click", ts, day, v.window,
                                          len(events), slot=slot, request_id=resp.request_id))
                if buys[pos]:  # checkout knows no slot: the report attributes it by time
                    events.append(self._event(member, t.item_ids[items[pos]], "purchase", ts + 240, day,
                                              v.window, len(events)))
                    bought.append(int(items[pos]))
        if v.check_in and (item := w.organic(v.member, rng)) >= 0:  # not on a delivery-only visit
            events.append(self._event(member, t.item_ids[item], "purchase", at + int(rng.integers(300, 540)),
                                      day, v.window, len(events)))
            self.days[day].organic_purchases += 1
            bought.append(item)
        w.order(v.member, bought, day, rng)
        return events

    def _event(self, member: str, item: str, kind: str, ts: int, day: int, window: int, k: int,
               slot: str = "", request_id: str = "") -> pb.Event:
        return pb.Event(member_id=member, item_id=item, event=kind, ts=ts, slot=slot, request_id=request_id,
                        event_id=f"sim-{day}-{window}-{member}-{k}", quantity=1)

    async def _track(self, events: list[pb.Event]) -> None:
        for k in range(0, len(events), 1000):
            chunk = events[k:k + 1000]
            resp = await self.client.track(chunk)
            if resp.new_events != len(chunk):
                raise SimulateError(f"TrackEvents stored {resp.new_events} of {len(chunk)} new events "
                                    f"({resp.duplicates} seen as duplicates)")
            self.sent.update(e.event for e in chunk)
