"""One contract, run against every training model: same shapes, exclusion and padding rules."""

import numpy as np
import pytest

from tests.factories import make_dataset
from training.config import TrainConfig
from training.dataset import confidence_matrix, leave_last_out, seen_matrix
from training.evaluate import ALL_MODELS, fit_models


@pytest.fixture(scope="module")
def fitted():
    ds = make_dataset(members=80, n_items=80, seed=3)
    cfg = TrainConfig.model_validate({"als": {"factors": 8, "iterations": 5}})
    split = leave_last_out(ds)
    return split, fit_models(split, cfg), confidence_matrix(split.train, cfg.weighting)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_recommend_shape_order_and_exclusion(fitted, name):
    split, models, _ = fitted
    model = models[name]
    members = np.arange(10)
    seen = seen_matrix(split.train)
    items, scores = model.recommend(members, 5, exclude=seen)
    assert items.shape == scores.shape == (10, 5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "best first"
    for row, m in enumerate(members):
        assert not set(items[row].tolist()) & set(seen[m].indices.tolist())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_recommend_pads_when_catalogue_runs_out(fitted, name):
    split, models, _ = fitted
    items, scores = models[name].recommend(np.array([0]), 100, exclude=seen_matrix(split.train))
    assert items.shape == (1, 100)
    assert np.all(items[0, 80:] == -1) and np.all(np.isneginf(scores[0, 80:]))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_score_is_deterministic(fitted, name):
    _, models, _ = fitted
    a = models[name].score(np.array([1, 2]))
    np.testing.assert_array_equal(a, models[name].score(np.array([1, 2])))


def test_als_similar_excludes_the_item_itself(fitted):
    _, models, _ = fitted
    ids, sims = models["als"].similar(np.array([0, 5]), 3)
    assert ids.shape == (2, 3) and 0 not in ids[0] and 5 not in ids[1]
    assert np.all(np.diff(sims, axis=1) <= 1e-6)


def test_als_learns_planted_taste(fitted):
    """Members of one taste group get mostly that group's category on top."""
    split, models, _ = fitted
    items, _ = models["als"].recommend(np.arange(40), 3, exclude=seen_matrix(split.train))
    cats = np.arange(80) % 4
    member_cat = np.array([int(m[1:]) % 4 for m in split.train.events.member_ids[:40]])
    agree = np.mean(cats[items] == member_cat[:, None])
    assert agree > 0.6
