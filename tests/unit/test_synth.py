"""The synthetic mall: deterministic, in our input format, and shaped like a real one."""

from __future__ import annotations

import numpy as np
import pytest

from service.model_bundle import EVENT_TYPES
from training.events import load_dataset
from training.synth import generate

NOW = 1_800_000_000
SIZE = {"members": 400, "items": 300, "events": 30_000, "days": 30, "now": NOW}


@pytest.fixture(scope="module")
def mall(tmp_path_factory):
    written = []
    paths = generate(tmp_path_factory.mktemp("mall"), seed=3, progress=written.append, **SIZE)
    return paths, written


@pytest.fixture(scope="module")
def ds(mall):
    paths = mall[0]
    return load_dataset(paths["events"], paths["items"], paths["members"], max_bad_share=0.0)


def test_deterministic_for_a_seed(tmp_path, mall):
    again = generate(tmp_path / "again", seed=3, **SIZE)
    for name, path in mall[0].items():
        assert again[name].read_bytes() == path.read_bytes(), name
    other = generate(tmp_path / "other", seed=4, **SIZE)
    assert other["events"].read_bytes() != mall[0]["events"].read_bytes()


def test_row_counts_and_progress(mall, ds):
    paths, written = mall
    assert {p.name for p in paths.values()} == {"events.csv", "items.csv", "members.csv"}
    assert len(ds.events) == SIZE["events"] and sum(written) == SIZE["events"]
    assert ds.n_items == SIZE["items"] and ds.n_members == SIZE["members"]
    rep = ds.events.report
    assert rep["rejected"] == {} and rep["unknown_item"]["count"] == 0
    assert ds.events.quantity is not None and (ds.events.quantity >= 1).all()


def test_parquet_reads_back_the_same(tmp_path):
    small = dict(SIZE, events=2_000)
    csv = generate(tmp_path / "c", seed=5, **small)
    pq = generate(tmp_path / "p", seed=5, fmt="parquet", **small)
    assert pq["events"].suffix == ".parquet"
    a = load_dataset(csv["events"], csv["items"], csv["members"], max_bad_share=0.0)
    b = load_dataset(pq["events"], pq["items"], pq["members"], max_bad_share=0.0)
    for name in ("member", "item", "event", "ts", "quantity"):
        assert np.array_equal(getattr(a.events, name), getattr(b.events, name)), name
    assert np.array_equal(a.items.price, b.items.price) and list(a.items.tags) == list(b.items.tags)
    assert list(a.members.tier) == list(b.members.tier)


def test_time_window_and_event_mix(ds):
    ev = ds.events
    assert ev.ts.min() >= NOW - 30 * 86400 and ev.ts.max() < NOW
    share = np.bincount(ev.event, minlength=len(EVENT_TYPES)) / len(ev)
    view, click, fav, cart, purchase = share
    assert 0.7 < view < 0.9 and 0.05 < click < 0.11 and 0.015 < fav < 0.05
    assert 0.03 < cart < 0.07 and 0.012 < purchase < 0.04
    hours = (ev.ts // 3600 + 8) % 24  # local time: nights are quiet
    assert (hours == 21).sum() > 3 * (hours == 4).sum()


def test_catalogue_shape(ds):
    items = ds.items
    assert 5 <= len(set(items.category)) <= 50 and 10 <= len(set(items.brand)) <= 200
    assert (items.price < 10).any() and (items.price > 100).any() and (items.price > 0).all()
    assert 0 < (items.stock == 0).mean() < 0.15 and (~items.on_shelf).any()
    new = items.launched_at >= NOW - 14 * 86400
    assert new.any() and new.mean() < 0.15
    tags = {t for tag in items.tags for t in tag.split()}
    assert {"new", "sale", "gift", "gold-only"} <= tags
    assert all("new" in t.split() for t in items.tags[new])


def test_members_tiers(ds):
    tiers, counts = np.unique(ds.members.tier.astype(str), return_counts=True)
    share = dict(zip(tiers, counts / counts.sum(), strict=True))
    assert set(share) == {"bronze", "silver", "gold", "platinum"}
    assert share["bronze"] > share["silver"] > share["gold"] > share["platinum"]
    assert not np.isnan(ds.members.points).any()


def test_popularity_is_skewed(ds):
    counts = np.sort(np.bincount(ds.events.item, minlength=ds.n_items))[::-1]
    top = counts[: len(counts) // 10].sum() / counts.sum()
    assert top > 0.35


def test_new_launches_only_after_launch_and_trending(ds):
    ev, items = ds.events, ds.items
    assert (ev.ts >= items.launched_at[ev.item]).all()
    new = items.launched_at[ev.item] >= NOW - 14 * 86400
    recent = ev.ts >= NOW - 2 * 86400
    assert new.any() and new[recent].mean() > new[~recent].mean()


def test_purchases_follow_views_and_repeat(ds):
    ev = ds.events
    key = ev.member.astype(np.int64) * ds.n_items + ev.item
    bought = ev.event == EVENT_TYPES.index("purchase")
    viewed = set(key[ev.event == 0].tolist())
    assert np.mean([k in viewed for k in key[bought]]) > 0.7
    _, times = np.unique(key[bought], return_counts=True)
    assert (times > 1).any()  # repeat purchases of consumables


def test_gold_only_items_not_bought_by_lower_tiers(ds):
    ev, items, members = ds.events, ds.items, ds.members
    gold_only = np.array(["gold-only" in t.split() for t in items.tags])
    bought = ev.event == EVENT_TYPES.index("purchase")
    tier = members.tier[ev.member[bought & gold_only[ev.item]]]
    assert set(tier.tolist()) <= {"gold", "platinum"}


def test_taste_structure(ds):
    """Members concentrate on a few categories, much more than random draws would."""
    ev, items = ds.events, ds.items
    cats = np.unique(items.category.astype(str), return_inverse=True)[1]
    active = np.flatnonzero(np.bincount(ev.member, minlength=ds.n_members) >= 30)
    top_share = []
    for m in active:
        c = np.bincount(cats[ev.item[ev.member == m]])
        top_share.append(np.sort(c)[-3:].sum() / c.sum())
    assert len(active) > 20 and np.median(top_share) > 0.5


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        generate(tmp_path, members=1, items=2, events=1, fmt="json")
