"""Re-ranker features: shaped by FEATURE_NAMES, deterministic, and saying what they claim."""

import numpy as np
import pytest

from service.model_bundle import EVENT_BIT, MemberTable
from service.rerank.features import (
    FEATURE_NAMES,
    N_FEATURES,
    SOURCES,
    Candidates,
    FeatureContext,
    compute,
)
from tests.factories import items_table
from training.dataset import Dataset, Interactions
from training.history import member_history

N_ITEMS = 24
HOUR = 3600
COL = {name: j for j, name in enumerate(FEATURE_NAMES)}


def approx(value: float):
    return pytest.approx(value, rel=1e-4)  # features keep 16 mantissa bits


def _arrays(history: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    nbr = np.array([[(i + 1) % N_ITEMS, (i + 2) % N_ITEMS] for i in range(N_ITEMS)], dtype=np.int32)
    return {
        "item_factors": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
        "member_factors": rng.normal(size=(3, 6)).astype(np.float32),
        "popularity_global": np.arange(N_ITEMS, dtype=np.float32),
        "popularity_trending": np.arange(N_ITEMS, dtype=np.float32)[::-1].copy(),
        "neighbour_items": nbr,
        "neighbour_scores": np.tile(np.array([[0.9, 0.5]], dtype=np.float32), (N_ITEMS, 1)),
        **history,
    }


@pytest.fixture(scope="module")
def ctx() -> FeatureContext:
    # member 0: viewed item 0 (category c0) at t=1h, carted item 5 (c1) at t=2h; member 1 bought 3
    rows = [(0, 0, 0, 1 * HOUR), (0, 5, 3, 2 * HOUR), (1, 3, 4, 1 * HOUR), (2, 7, 0, HOUR)]
    items = items_table(N_ITEMS)
    members = MemberTable(np.array(["m0", "m1", "m2"]), np.array(["gold", "bronze", ""]),
                          np.array([900.0, 10.0, np.nan]))
    cols = list(zip(*rows, strict=True))
    ev = Interactions(member=np.array(cols[0], np.int32), item=np.array(cols[1], np.int32),
                      event=np.array(cols[2], np.uint8), ts=np.array(cols[3], np.int64),
                      member_ids=members.member_id, item_ids=items.item_id)
    ds = Dataset(ev, items, members)
    return FeatureContext(items, members, _arrays(member_history(ds)))


def batch(items, sources=None) -> Candidates:
    return Candidates.from_names(items, sources or ["als"] * len(items))


def test_shape_dtype_and_names(ctx):
    assert len(set(FEATURE_NAMES)) == N_FEATURES
    member = ctx.member_inputs(0, now=3 * HOUR, vector=np.ones(6, np.float32))
    x = compute(ctx, member, batch([1, 2, 4, 8, 12]))
    assert x.shape == (5, N_FEATURES) and x.dtype == np.float32
    assert compute(ctx, member, batch([])).shape == (0, N_FEATURES)


def test_deterministic_and_independent_of_other_calls(ctx):
    items = [4, 9, 1, 17, 22, 6]
    a = compute(ctx, ctx.member_inputs(0, 3 * HOUR, vector=np.ones(6)), batch(items))
    compute(ctx, ctx.member_inputs(1, 5 * HOUR), batch([2, 3]))  # another member in between
    b = compute(ctx, ctx.member_inputs(0, 3 * HOUR, vector=np.ones(6)), batch(items))
    np.testing.assert_array_equal(a, b)  # NaNs in the same places too


def test_first_stage_and_source_columns(ctx):
    x = compute(ctx, ctx.member_inputs(0, 3 * HOUR), batch([1, 2, 3], ["als", "trending", "no-such-source"]))
    assert x[:, COL["fs_rank"]].tolist() == [0, 1, 2]
    assert x[0, COL["src_als"]] == 1 and x[1, COL["src_trending"]] == 1 and x[2, COL["src_other"]] == 1
    assert x[:, [COL[f"src_{s}"] for s in SOURCES]].sum(axis=1).tolist() == [1, 1, 1]
    assert np.isnan(x[:, COL["als_score"]]).all()  # no taste vector given


def test_member_item_features(ctx):
    member = ctx.member_inputs(0, now=3 * HOUR)
    x = compute(ctx, member, batch([4, 9, 1]))  # c0, c1, c1 (items_table: category k % 4)
    assert x[0, COL["cat_share"]] == approx(0.5) and x[0, COL["cat_hours"]] == approx(2.0)
    assert x[1, COL["cat_share"]] == approx(0.5) and x[1, COL["cat_strong"]] == 1  # carted 5 (c1)
    assert x[1, COL["cat_hours"]] == approx(1.0)
    assert x[2, COL["nbr_max"]] == approx(0.9)  # 1 is item 0's first neighbour
    assert x[0, COL["member_hours"]] == approx(1.0)
    assert x[0, COL["tier_rank"]] == 1 and x[0, COL["points_log"]] == approx(np.log1p(900))


def test_fresh_events_merge_with_history(ctx):
    before = compute(ctx, ctx.member_inputs(2, now=4 * HOUR), batch([7, 11]))
    fresh = [(7, "purchase", 3 * HOUR), (11, 1, 3 * HOUR)]  # event by name or index
    after = compute(ctx, ctx.member_inputs(2, now=4 * HOUR, recent=fresh), batch([7, 11]))
    assert before[0, COL["own_events"]] == EVENT_BIT["view"]
    assert after[0, COL["own_events"]] == EVENT_BIT["view"] | EVENT_BIT["purchase"]
    assert after[1, COL["own_events"]] == EVENT_BIT["click"] and after[1, COL["own_hours"]] == approx(1.0)
    assert after[0, COL["member_buys"]] == 1


def test_unknown_member_still_scores(ctx):
    x = compute(ctx, ctx.member_inputs(None, now=HOUR), batch([0, 1, 2]))
    assert x.shape == (3, N_FEATURES)
    assert np.isnan(x[:, COL["sim_max"]]).all() and (x[:, COL["member_items_log"]] == 0).all()


def test_values_sit_on_the_16_bit_mantissa_grid(ctx):
    """ONNX compares in float32, LightGBM in double: on this grid both split every value alike."""
    member = ctx.member_inputs(0, 3 * HOUR + 17, vector=np.linspace(-1, 1, 6))
    x = compute(ctx, member, batch(list(range(20))))
    finite = np.isfinite(x)
    assert ((x[finite].view(np.uint32) & 0x7F) == 0).all()


def test_sliced_bincount_equals_numpy() -> None:
    from service.rerank.arrays import bincount

    rng = np.random.default_rng(2)
    x = rng.integers(0, 50, 1000)
    w = rng.random(1000)
    for weights, minlength in ((None, 0), (w, 0), (w, 80), (None, 10)):
        want = np.bincount(x, weights, minlength=minlength)
        got = bincount(x, weights, minlength=minlength, chunk=97)
        assert got.dtype == want.dtype and np.allclose(got, want) and len(got) == len(want)
    late_max = np.r_[np.zeros(200, np.int64), [120]]  # the largest value only in the last slice
    assert bincount(late_max, chunk=50).tolist() == np.bincount(late_max).tolist()
