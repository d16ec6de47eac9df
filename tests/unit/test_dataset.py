"""Weighting, time decay and splits: the numbers models are fitted on."""

import numpy as np
import pytest

from tests.factories import DAY, make_dataset
from training.config import EventWeights, Weighting
from training.dataset import confidence_matrix, decay, leave_last_out, seen_matrix, temporal


def _w(**kw) -> Weighting:
    return Weighting(**{"half_life": None, "log_scale": False, **kw})


def test_event_weights_sum_per_pair():
    ds = make_dataset([("m1", "i0", "view", 0), ("m1", "i0", "purchase", 0), ("m1", "i1", "cart", 0)])
    m = confidence_matrix(ds, _w())
    assert m[0, 0] == pytest.approx(1 + 10)  # view + purchase (defaults)
    assert m[0, 1] == pytest.approx(6)
    assert m.nnz == 2


def test_default_weights_are_ordered_view_to_purchase():
    w = EventWeights()
    assert w.view < w.click < w.fav < w.cart < w.purchase


def test_log_scale_squashes_repeats():
    ds = make_dataset([("m1", "i0", "view", 0)] * 100 + [("m1", "i1", "purchase", 0)])
    m = confidence_matrix(ds, _w(log_scale=True))
    assert m[0, 0] == pytest.approx(np.log1p(100))
    assert m[0, 1] == pytest.approx(np.log1p(10))


def test_global_decay_halves_per_half_life():
    ds = make_dataset([("m1", "i0", "purchase", 0), ("m2", "i1", "purchase", 10 * DAY)])
    m = confidence_matrix(ds, _w(half_life=10 * DAY))
    assert m[0, 0] == pytest.approx(5.0)  # 10 days old: half of 10
    assert m[1, 1] == pytest.approx(10.0)


def test_member_decay_measures_age_from_members_own_last_event():
    ds = make_dataset([("m1", "i0", "view", 0), ("m1", "i1", "view", 2),
                       ("m2", "i2", "view", 1000), ("m2", "i3", "view", 1001)])
    d = decay(ds.events, 1.0, "member", ds.n_members)
    np.testing.assert_allclose(d, [0.25, 1.0, 0.5, 1.0])


def test_zero_weight_events_leave_no_entry():
    ds = make_dataset([("m1", "i0", "view", 0), ("m1", "i1", "purchase", 0)])
    m = confidence_matrix(ds, _w(events=EventWeights(view=0)))
    assert m.nnz == 1 and m[0, 1] == 10


def test_leave_last_out_holds_each_members_latest_new_item():
    ds = make_dataset([("m1", "i0", "view", 1), ("m1", "i1", "view", 5), ("m1", "i2", "view", 3),
                       ("m2", "i3", "view", 1)])  # m2 has one event: kept for training
    s = leave_last_out(ds)
    assert s.test_members.tolist() == [0] and s.test_items.tolist() == [1]
    assert len(s.train.events) == 3


def test_temporal_split_scores_only_known_members_on_new_items():
    ds = make_dataset([("m1", "i0", "view", 0), ("m1", "i1", "view", 10 * DAY),
                       ("m1", "i0", "purchase", 10 * DAY),  # already seen: not a target
                       ("m2", "i2", "view", 10 * DAY)])  # no training events: not scored
    s = temporal(ds, days=1)
    assert list(zip(s.test_members.tolist(), s.test_items.tolist(), strict=True)) == [(0, 1)]
    assert seen_matrix(s.train).nnz == 1
