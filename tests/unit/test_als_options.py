"""ALS options found by tuning on amazon-beauty: attribute pseudo-members and the member re-solve."""

from dataclasses import replace

import numpy as np

from tests.factories import make_dataset
from training.als import ALS, attribute_rows
from training.config import TrainConfig
from training.dataset import confidence_matrix

CFG = TrainConfig.model_validate({"als": {"factors": 8, "iterations": 10, "regularization": 0.1}})


def test_attribute_rows_hold_each_category_brand_and_tag_once():
    items = make_dataset(n_items=4).items
    items = replace(items, category=np.array(["a", "a", "", "b"]), brand=np.array(["x", "", "", "x"]),
                    tags=np.array(["t u", "u u", "", ""]))
    m = attribute_rows(items, 2.5)
    rows = sorted(tuple(np.flatnonzero(r.toarray().ravel()).tolist()) for r in m)
    assert rows == [(0,), (0, 1), (0, 1), (0, 3), (3,)]  # t; a and u; x; b
    assert m.shape == (5, 4) and set(m.data.tolist()) == {2.5}  # "u u" counts once


def test_an_item_nobody_touched_learns_from_its_attributes():
    ds = make_dataset(members=80, n_items=40, seed=1)
    # item 39 has no events; it shares its category with items 3, 7, 11, ... (category c3)
    keep = ds.events.item != 39
    ds = ds.with_events(ds.events.subset(keep))
    matrix = confidence_matrix(ds, CFG.weighting)
    plain = ALS(CFG.als).fit(ds, matrix)
    attrs = ALS(CFG.als.model_copy(update={"attribute_weight": 1.0})).fit(ds, matrix)
    assert np.allclose(plain.item_factors[39], 0)
    v = attrs.item_factors
    cos = v @ v[39] / (np.linalg.norm(v, axis=1) * np.linalg.norm(v[39]) + 1e-12)
    same = np.arange(3, 39, 4)
    others = np.setdiff1d(np.arange(39), same)
    assert cos[same].mean() > cos[others].mean() + 0.2
    assert attrs.member_factors.shape == plain.member_factors.shape  # pseudo-members kept apart


def test_member_resolve_is_the_closed_form_on_sharper_confidence():
    ds = make_dataset(members=60, n_items=24, seed=2)
    w = CFG.weighting.model_copy(update={"half_life": 20 * 86400.0, "member_half_life": 2 * 86400.0})
    matrix = confidence_matrix(ds, w)
    model = ALS(CFG.als, w).fit(ds, matrix)
    fitted_members = model.fitted[0]
    assert not np.allclose(model.member_factors, fitted_members)
    sharp = confidence_matrix(ds, w.model_copy(update={"half_life": w.member_half_life}))
    y = model.item_factors.astype(np.float64)
    a = CFG.als
    for m in (0, 7, 33):
        row = sharp[m]
        c = a.alpha * row.data.astype(np.float64)
        yi = y[row.indices]
        lhs = y.T @ y + a.regularization * np.eye(a.factors) + (yi.T * (c - 1.0)) @ yi
        expected = np.linalg.solve(lhs, yi.T @ c)
        assert np.allclose(model.member_factors[m], expected, atol=1e-3)
