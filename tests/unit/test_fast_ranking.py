"""The fast rankings (threshold top-n, popularity orders, the blend from top candidates) equal a
brute-force sort of every item's score, seen items excluded."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tests.factories import make_dataset
from training import model_api
from training.config import TrainConfig
from training.dataset import confidence_matrix, leave_last_out, seen_matrix
from training.evaluate import fit_models
from training.model_api import Blend, Model, top_n
from training.popularity import CategoryPopularity, GlobalPopularity


def brute(scores: np.ndarray, exclude: sp.csr_matrix | None, members: np.ndarray, n: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Sort every item: score descending, then item code; excluded items never appear."""
    scores = np.array(scores, dtype=np.float32)
    if exclude is not None:
        scores[exclude[members].toarray() > 0] = -np.inf
    cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((cols, -scores), axis=-1)[:, :n]
    top = np.full((len(scores), n), -np.inf, dtype=np.float32)
    items = np.full((len(scores), n), -1, dtype=np.int64)
    top[:, :order.shape[1]] = np.take_along_axis(scores, order, axis=1)
    items[:, :order.shape[1]] = order
    return np.where(np.isfinite(top), items, -1), top


def test_threshold_top_n_is_the_full_sort() -> None:
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((300, 4000)).astype(np.float32)
    scores[3] = -np.inf  # nothing to rank: the plain path
    scores[4, 20:] = -np.inf  # fewer finite scores than n
    for n in (1, 10, 20, 100):
        items, top = top_n(scores, n)
        want_items, want = brute(scores, None, np.arange(300), n)
        np.testing.assert_array_equal(top, want)
        finite = np.isfinite(want)
        np.testing.assert_array_equal(items[finite], want_items[finite])


@pytest.fixture(scope="module")
def fitted():  # type: ignore[no-untyped-def]
    # 12 categories (item code % 12), members with more items than n: exclusions reach past the head
    ds = make_dataset(members=200, n_items=240, seed=6)
    ds.items.category[:] = np.array([f"c{k % 12}" for k in range(ds.n_items)])
    cfg = TrainConfig.model_validate({"als": {"factors": 8, "iterations": 4}, "reranker": {"enabled": False}})
    split = leave_last_out(ds)
    models = fit_models(split, cfg, ("als", "popularity", "als+popularity"))
    matrix = confidence_matrix(split.train, cfg.weighting)
    category = CategoryPopularity(cfg.weighting, cfg.popularity).fit(split.train, matrix)
    return split, models, category


@pytest.mark.parametrize("n", [5, 20, 300])
def test_popularity_from_one_order_is_the_full_sort(fitted, n: int) -> None:  # type: ignore[no-untyped-def]
    split, models, category = fitted
    members = np.arange(split.train.n_members)
    seen = seen_matrix(split.train)
    for model in (models["popularity"], category):
        assert isinstance(model, GlobalPopularity | CategoryPopularity)
        items, scores = model.recommend(members, n, exclude=seen)
        want_items, want = brute(model.score(members), seen, members, n)
        np.testing.assert_array_equal(scores, want)
        np.testing.assert_array_equal(items, want_items)


def test_blend_from_top_candidates_is_the_full_blend(fitted, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    split, models, _ = fitted
    members = np.arange(split.train.n_members)
    seen = seen_matrix(split.train)
    blend = models["als+popularity"]
    assert isinstance(blend, Blend)
    full_items, full = Model.recommend(blend, members, 20, exclude=seen)  # dense scores, every item
    # 1: most members' bound fails: deeper lists settle them; with no deeper lists allowed they rank fully
    for candidates, deepest in ((50, model_api.DEEPEST), (1, model_api.DEEPEST), (1, 1)):
        monkeypatch.setattr(model_api, "DEEPEST", deepest)
        fast = Blend(blend.name, blend.parts, candidates)
        items, scores = fast.recommend(members, 20, exclude=seen)
        np.testing.assert_allclose(scores, full, rtol=1e-5, atol=1e-5)
        assert np.mean(items == full_items) > 0.999
        if deepest == 1:
            assert fast.full_rows > 0
        else:
            assert fast.full_rows < len(members)
