"""Re-ranker features: the one home of feature code, shared by the trainer and the service.

Training computes its feature rows with this module from pre-cutoff data, the service with it
from the live bundle, so the two cannot drift. Pure NumPy; nothing from ``training`` or implicit.

How the service uses it (per bundle, then per request)::

    ctx = FeatureContext.from_bundle(bundle)                     # once, when the bundle loads
    member = ctx.member_inputs(member_index_or_None, now,
                               recent=[(item, event, ts), ...],  # state-store events, any order
                               vector=profile.vector)            # taste vector (bundle or fold-in)
    batch = Candidates.from_names(items, sources, scores)        # the blended list, best first
    x = compute(ctx, member, batch)                              # float32 [len(items), N_FEATURES]

``FEATURE_NAMES`` (its order is the contract) and ``FEATURE_VERSION`` go into the bundle manifest;
the scorer refuses a model trained on another list. Change a feature -> bump FEATURE_VERSION.

The slot name is deliberately not a feature: training rows have no slot, so the service decides per
slot whether to re-rank. Values are scale-free where they can be (percentiles, shares, ratios,
within-batch z-scores) because the model is trained on an older first stage than it serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from service.ids import text_array, unique_text
from service.model_bundle import EVENT_BIT, EVENT_TYPES, ItemTable, MemberTable
from service.rerank.arrays import (
    NEVER,
    Table,
    bincount,
    group_median,
    group_table,
    median,
    percentile,
    quantise,
    runs,
    string_codes,
    zscore,
)

FEATURE_VERSION = 1

#: Candidate source names as the service's recipes call them; anything else is "other". "liked"
#: (RP3beta) counts as "other" too: a column of its own would change FEATURE_NAMES, and the scorer
#: refuses a re-ranker trained on another list, so every older bundle's re-ranker would stop serving.
SOURCES: tuple[str, ...] = ("als", "similar_recent", "similar_order", "category_popular", "popular",
                            "trending", "new_launches", "repeat_purchase", "query_match", "other")
SOURCE_INDEX = {name: i for i, name in enumerate(SOURCES)}
OTHER_SOURCE = SOURCE_INDEX["other"]

#: Item columns that do not depend on the member or the clock (precomputed per bundle).
_ITEM_STATIC = ("pop_pct", "trend_pct", "cat_pop_pct", "item_members_log", "item_fav_rate",
                "item_cart_rate", "item_buy_rate", "price_log", "price_vs_category", "stock_log",
                "in_stock", "on_shelf")

FEATURE_NAMES: tuple[str, ...] = (
    # first stage: where the blend put the candidate, and who brought it
    "fs_rank", "fs_rank_pct", "fs_score_z",
    *(f"src_{s}" for s in SOURCES),
    # taste: the member's vector against the item's (every candidate, whatever its source)
    "als_score", "als_score_z",
    # item
    *_ITEM_STATIC, "launch_days",
    # member x item
    "price_vs_member", "cat_share", "cat_strong", "cat_hours", "brand_share", "brand_hours",
    "sim_max", "sim_last", "sim_recent", "nbr_max", "nbr_hits", "own_events", "own_hours",
    # member
    "member_items_log", "member_hours", "member_buys", "tier_rank", "points_log",
)
N_FEATURES = len(FEATURE_NAMES)

RECENT = 10  # recent items compared with each candidate (the service's "similar" seeds too)
_RECENT_DECAY = 0.7  # weight of the k-th most recent item: 0.7 ** k
_STRONG = EVENT_BIT["fav"] | EVENT_BIT["cart"] | EVENT_BIT["purchase"]
_INTENT = EVENT_BIT["cart"] | EVENT_BIT["purchase"]
_RATE_PRIOR = 10.0  # smooths per-item rates of rarely seen items toward the catalogue's rate


@dataclass(frozen=True)
class Candidates:
    """One slot's candidate batch, in the first-stage (blended) order unless ``rank`` says otherwise.

    ``score`` is the blend's score (service.blend.Interleave gives 1 - position / length); ``rank``
    is the 0-based first-stage position (default: the order given).
    """

    items: np.ndarray  # int item indices
    source: np.ndarray  # int SOURCES indices
    score: np.ndarray  # float first-stage score
    rank: np.ndarray  # int first-stage position

    @classmethod
    def from_names(cls, items: Sequence[int] | np.ndarray, sources: Sequence[str],
                   scores: Sequence[float] | np.ndarray | None = None,
                   ranks: Sequence[int] | np.ndarray | None = None) -> Candidates:
        items = np.asarray(items, dtype=np.int64)
        n = len(items)
        src = np.fromiter((SOURCE_INDEX.get(s, OTHER_SOURCE) for s in sources), dtype=np.int64, count=n)
        score = (1.0 - np.arange(n) / max(n, 1)) if scores is None else np.asarray(scores, np.float64)
        rank = np.arange(n) if ranks is None else np.asarray(ranks, dtype=np.int64)
        return cls(items, src, score, rank)

    def __len__(self) -> int:
        return len(self.items)


class MemberInputs:
    """What one request knows about the member: history pairs (bundle + fresh events), clock, vector.

    Member-level summaries are computed on first use and kept, so the slots of one page share them.
    """

    def __init__(self, items: np.ndarray, last_ts: np.ndarray, events: np.ndarray,
                 purchases: np.ndarray, now: float, vector: np.ndarray | None = None,
                 tier_rank: float = np.nan, points: float = np.nan) -> None:
        self.items = np.asarray(items, dtype=np.int64)
        self.last_ts = np.asarray(last_ts, dtype=np.int64)
        self.events = np.asarray(events, dtype=np.uint8)
        self.purchases = np.asarray(purchases, dtype=np.int64)
        self.now = float(now)
        self.vector = None if vector is None else np.asarray(vector, dtype=np.float32)
        self.tier_rank = float(tier_rank)
        self.points = float(points)

    @cached_property
    def by_item(self) -> Table:
        """item -> (event mask, last time) for per-candidate lookups."""
        order = np.argsort(self.items, kind="stable")
        return Table.build(self.items[order], (self.events[order], self.last_ts[order]), (0.0, np.nan))

    @cached_property
    def recent(self) -> np.ndarray:
        """The RECENT most recently touched items, newest first."""
        order = np.argsort(-self.last_ts, kind="stable")[:RECENT]
        return self.items[order]


class FeatureContext:
    """Per-bundle lookups (item attributes, popularity, neighbours, factors, history), built once."""

    def __init__(self, items: ItemTable, members: MemberTable, arrays: dict[str, np.ndarray]) -> None:
        n = len(items)
        self.n_items = n
        self.arrays = arrays
        self.factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        norms = np.linalg.norm(self.factors, axis=1)
        self.inv_norm = (1.0 / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self.unit = self.factors * self.inv_norm[:, None]
        self.neighbour_items = arrays["neighbour_items"]
        self.neighbour_scores = arrays["neighbour_scores"]
        self.category, self.n_categories = string_codes(items.category)
        self.brand, _ = string_codes(items.brand)
        launched = np.asarray(items.launched_at, dtype=np.float64)
        self.launched_at = np.where(launched >= 0, launched, np.nan)
        self.price = np.asarray(items.price, dtype=np.float64)
        self.item_static = self._item_static(items, arrays)
        self._tiers = _tier_ranks(members)
        self._member_tier = text_array(members.tier)
        self._member_points = np.asarray(members.points, dtype=np.float64)

    @classmethod
    def from_bundle(cls, bundle: Any) -> FeatureContext:
        """From a loaded ``service.model_bundle.Bundle`` (the service side)."""
        return cls(bundle.items, bundle.members, bundle.arrays)

    def _item_static(self, items: ItemTable, arrays: dict[str, np.ndarray]) -> np.ndarray:
        n = self.n_items
        pop = np.asarray(arrays["popularity_global"], dtype=np.float64)
        trend = np.asarray(arrays["popularity_trending"], dtype=np.float64)
        # popularity percentile inside the item's own category
        _, dense = np.unique(pop, return_inverse=True)
        width = int(dense.max()) + 2 if n else 1
        cat = np.where(self.category >= 0, self.category, self.n_categories)
        key = np.sort(cat * width + dense)
        left = np.searchsorted(key, cat * width + dense, "left")
        start = np.searchsorted(key, cat * width, "left")
        size = np.searchsorted(key, (cat + 1) * width, "left") - start
        cat_pct = (left - start) / np.maximum(size - 1, 1)
        # engagement from the members' histories: how often a touch turns into fav / cart / purchase
        h_items, h_mask = arrays["history_items"], arrays["history_events"]
        touched = bincount(h_items, minlength=n).astype(np.float64)

        def rate(bits: int) -> np.ndarray:
            hits = bincount(h_items, weights=(h_mask & bits) > 0, minlength=n)
            base = hits.sum() / max(touched.sum(), 1.0)
            return (hits + _RATE_PRIOR * base) / (touched + _RATE_PRIOR)

        price = self.price
        med = group_median(cat, price, self.n_categories + 1)[cat]
        stock = np.asarray(items.stock, dtype=np.float64)
        cols = {
            "pop_pct": percentile(pop),
            "trend_pct": percentile(trend),
            "cat_pop_pct": np.where(self.category >= 0, cat_pct, np.nan),
            "item_members_log": np.log1p(touched),
            "item_fav_rate": rate(EVENT_BIT["fav"]),
            "item_cart_rate": rate(_INTENT),
            "item_buy_rate": rate(EVENT_BIT["purchase"]),
            "price_log": np.log1p(np.where(price >= 0, price, np.nan)),
            "price_vs_category": price / np.where(med > 0, med, np.nan),
            "stock_log": np.log1p(np.where(stock >= 0, stock, np.nan)),
            "in_stock": np.where(stock >= 0, stock > 0, np.nan),
            "on_shelf": np.asarray(items.on_shelf, dtype=np.float64),
        }
        return np.stack([cols[c] for c in _ITEM_STATIC], axis=1).astype(np.float32)

    def member_inputs(self, member: int | None, now: float,
                      recent: Iterable[tuple[int, int | str, int]] = (),
                      vector: np.ndarray | None = None, tier: str | None = None,
                      points: float | None = None,
                      fresh: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> MemberInputs:
        """The member's bundle history merged with fresh ``(item, event, ts)`` events.

        ``event`` is an EVENT_TYPES name or index; ``fresh`` gives the same events as three arrays
        (items, EVENT_TYPES indices, times), as the service's member profile holds them.
        ``tier``/``points`` override the bundle's members table (a member promoted since training);
        unknown members get NaN (the model handles it).
        """
        a = self.arrays
        if member is not None and 0 <= member < len(a["history_indptr"]) - 1:
            h = slice(int(a["history_indptr"][member]), int(a["history_indptr"][member + 1]))
            items, last, mask, buys = (a["history_items"][h], a["history_last_ts"][h],
                                       a["history_events"][h], a["history_purchases"][h])
            tier = self._member_tier[member] if tier is None else tier
            points = self._member_points[member] if points is None else points
        else:
            items = last = mask = buys = np.zeros(0, dtype=np.int64)
        if fresh is None:
            events = list(recent)
            fresh = (np.array([f[0] for f in events], dtype=np.int64),
                     np.array([EVENT_TYPES.index(e) if isinstance(e, str) else int(e) for _, e, _ in events],
                              dtype=np.int64),
                     np.array([f[2] for f in events], dtype=np.int64))
        if len(fresh[0]):
            f_items = np.asarray(fresh[0], dtype=np.int64)
            f_event = np.asarray(fresh[1]).astype(np.uint8)
            f_ts = np.asarray(fresh[2], dtype=np.int64)
            all_items = np.concatenate([items, f_items])
            uniq, inv = np.unique(all_items, return_inverse=True)
            new_last = np.full(len(uniq), NEVER, dtype=np.int64)
            np.maximum.at(new_last, inv, np.concatenate([last, f_ts]).astype(np.int64))
            new_mask = np.zeros(len(uniq), dtype=np.uint8)
            np.bitwise_or.at(new_mask, inv, np.concatenate([mask, (1 << f_event).astype(np.uint8)])
                             .astype(np.uint8))
            new_buys = np.bincount(inv, weights=np.concatenate(
                [buys, f_event == EVENT_TYPES.index("purchase")]), minlength=len(uniq))
            items, last, mask, buys = uniq, new_last, new_mask, new_buys
        tier_rank = self._tiers.get(str(tier), np.nan) if tier else np.nan
        return MemberInputs(items, last, mask, buys, now, vector, tier_rank,
                            np.nan if points is None else float(points))


def _tier_ranks(members: MemberTable) -> dict[str, float]:
    """Tier name -> rank by its members' median points (names carry no order we could trust)."""
    # the loader's Parquet dictionary codes, or a million tiers sorted (without the GIL)
    uniq, inverse = members.tier_codes or unique_text(members.tier)
    points = np.asarray(members.points, dtype=np.float64)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    med = {}
    for k, t in enumerate(uniq.tolist()):
        p = points[order[bounds[k]:bounds[k + 1]]]
        if t:
            med[t] = float(np.nanmedian(p)) if np.isfinite(p).any() else -np.inf
    names = list(med)
    return {t: float(r) for r, t in enumerate(sorted(names, key=lambda t: (med[t], t)))}


_COL = {name: j for j, name in enumerate(FEATURE_NAMES)}
_SRC0 = _COL[f"src_{SOURCES[0]}"]
_STATIC0 = _COL[_ITEM_STATIC[0]]
_MEMBER0 = _COL["member_items_log"]  # the member-level columns close the list
_NO_RECENT = [_COL[name] for name in ("sim_max", "sim_last", "sim_recent", "nbr_max", "nbr_hits")]
assert FEATURE_NAMES[_MEMBER0:] == ("member_items_log", "member_hours", "member_buys", "tier_rank",
                                    "points_log")
#: sim_recent's weights for k recent items: 0.7 ** position, summing to 1 (float32)
_RECENT_W = [np.zeros(0, np.float32)] + [
    (w / w.sum()).astype(np.float32) for w in (_RECENT_DECAY ** np.arange(k) for k in range(1, RECENT + 1))]


def compute(ctx: FeatureContext, member: MemberInputs, cands: Candidates) -> np.ndarray:
    """Feature rows for one candidate batch: float32 [len(cands), N_FEATURES] in FEATURE_NAMES order.

    Runs once per re-ranked slot on a ~100-candidate batch, so each line is one NumPy call on a whole
    column (``out[_COL[name]]``, one contiguous row per feature, turned at the end).
    """
    c = cands.items
    n = len(c)
    out = np.empty((N_FEATURES, n), dtype=np.float32)
    col = _COL
    rank = cands.rank.astype(np.float64)
    out[col["fs_rank"]] = rank
    out[col["fs_rank_pct"]] = rank / max(n - 1, 1)
    out[col["fs_score_z"]] = zscore(cands.score.astype(np.float64))
    out[_SRC0:_SRC0 + len(SOURCES)] = 0
    out[_SRC0 + cands.source, np.arange(n)] = 1
    if member.vector is not None:
        als = ctx.factors[c] @ member.vector
        out[col["als_score"]] = als
        out[col["als_score_z"]] = zscore(als.astype(np.float64))
    else:
        out[col["als_score"]] = np.nan
        out[col["als_score_z"]] = np.nan
    out[_STATIC0:_STATIC0 + len(_ITEM_STATIC)] = ctx.item_static[c].T
    now = member.now
    out[col["launch_days"]] = (now - ctx.launched_at[c]) / 86400.0
    stats = _member_stats(ctx, member)
    _member_item(ctx, member, stats, c, ctx.unit[c], out)  # unit[c] == factors[c] * inv_norm[c]
    # member-level (the same for every row; they shape how much the other features say)
    out[_MEMBER0:] = stats["member"][:, None]
    return quantise(np.ascontiguousarray(out.T))


def _member_item(ctx: FeatureContext, m: MemberInputs, stats: dict[str, Any], c: np.ndarray,
                 unit: np.ndarray, out: np.ndarray) -> None:
    """Features that relate the candidate to what this member did."""
    col = _COL
    now = m.now
    out[col["price_vs_member"]] = ctx.price[c] / stats["price"] if stats["price"] > 0 else np.nan
    cat = stats["cat"].get(ctx.category[c])
    out[col["cat_share"]] = cat[:, 0]
    out[col["cat_strong"]] = cat[:, 1]
    out[col["cat_hours"]] = (now - cat[:, 2]) / 3600.0
    brand = stats["brand"].get(ctx.brand[c])
    out[col["brand_share"]] = brand[:, 0]
    out[col["brand_hours"]] = (now - brand[:, 2]) / 3600.0
    recent = m.recent
    if len(recent):
        sims = unit @ ctx.unit[recent].T  # [n, R] cosine
        out[col["sim_max"]] = sims.max(axis=1)
        out[col["sim_last"]] = sims[:, 0]
        out[col["sim_recent"]] = sims @ _RECENT_W[len(recent)]
        nbr = stats["nbr"].get(c)
        out[col["nbr_max"]] = nbr[:, 0]
        out[col["nbr_hits"]] = nbr[:, 1]
    else:
        out[_NO_RECENT] = np.nan
    own = m.by_item.get(c)
    out[col["own_events"]] = own[:, 0]
    out[col["own_hours"]] = (now - own[:, 1]) / 3600.0


def _member_stats(ctx: FeatureContext, m: MemberInputs) -> dict[str, Any]:
    """Member summaries shared by every slot of a request (kept on the MemberInputs)."""
    cached = m.__dict__.get("_stats")
    if cached is not None and cached[0] is ctx:
        return cached[1]
    strong = (m.events & _STRONG) > 0
    h = len(m.items)
    prices = ctx.price[m.items]
    intent = ((m.events & _INTENT) > 0) & np.isfinite(prices)
    basis = prices[intent] if intent.any() else prices[np.isfinite(prices)]
    recent = m.recent
    nb = ctx.neighbour_items[recent].ravel().astype(np.int64)
    ns = ctx.neighbour_scores[recent].ravel()
    valid = nb >= 0
    nb, ns = nb[valid], ns[valid]
    order = np.lexsort((-ns, nb))
    nb, ns = nb[order], ns[order]
    starts = runs(nb)
    stats = {
        "cat": group_table(ctx.category[m.items], m.last_ts, strong),
        "brand": group_table(ctx.brand[m.items], m.last_ts, strong),
        "price": median(basis),
        "nbr": Table.build(nb[starts], (ns[starts], np.diff(np.append(starts, len(nb)))), (0.0, 0.0)),
        "member": np.array([  # the member-level columns, float64 as before the float32 cast
            np.log1p(h), (m.now - float(m.last_ts.max())) / 3600.0 if h else np.nan,
            float(m.purchases.sum()), m.tier_rank, np.log1p(m.points) if m.points >= 0 else np.nan],
            dtype=np.float64),
    }
    m.__dict__["_stats"] = (ctx, stats)
    return stats
