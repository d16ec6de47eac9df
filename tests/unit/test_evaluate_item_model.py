"""evaluate's RP3beta rows (``rp3beta`` and ``als+rp3beta``) and what they skip; ALS scoring scattered
items (an item model's candidates) gives the same dot products as the dense path."""

from __future__ import annotations

import numpy as np
import pytest

from tests.factories import make_dataset
from training.als import ALS
from training.config import TrainConfig
from training.dataset import confidence_matrix, leave_random_share
from training.evaluate import evaluate, fit_models
from training.model_api import Blend
from training.progress import Steps
from training.rp3beta import RP3beta

SMALL = {"als": {"factors": 8, "iterations": 3}, "reranker": {"enabled": False}}


def test_rp3beta_and_its_blend_with_als_are_rows_of_evaluate() -> None:
    split = leave_random_share(make_dataset(members=120, n_items=60, seed=5), 0.2, 0)
    config = TrainConfig.model_validate({**SMALL, "item_model": {"blend": 0.4}})
    models = fit_models(split, config)
    assert isinstance(models["rp3beta"], RP3beta)
    blend = models["als+rp3beta"]
    assert isinstance(blend, Blend)
    assert [(m.name, w) for m, w in blend.parts] == [("als", 0.6), ("rp3beta", 0.4)]
    results = evaluate(split, config, ks=(10,))
    assert {"als", "rp3beta", "als+rp3beta", "popularity"} <= set(results)
    assert 0 < results["rp3beta"]["hr@10"] <= 1


def test_without_the_item_model_both_rows_are_skipped_with_the_reason_once() -> None:
    split = leave_random_share(make_dataset(members=120, n_items=60, seed=5), 0.2, 0)
    said: list[str] = []

    class Said(Steps):
        def info(self, message: str) -> None:
            said.append(message)

    steps = Said(quiet=True)
    config = TrainConfig.model_validate({**SMALL, "item_model": {"max_paths": 1}})
    results = evaluate(split, config, ks=(10,), steps=steps)
    assert "rp3beta" not in results and "als+rp3beta" not in results and "als" in results
    assert [line for line in said if "rp3beta" in line and "max_paths" in line] == [
        next(line for line in said if "max_paths" in line)]


def test_als_scores_scattered_items_as_the_dense_product() -> None:
    ds = make_dataset(members=80, n_items=300, seed=2)
    cfg = TrainConfig.model_validate(SMALL)
    als = ALS(cfg.als).fit(ds, confidence_matrix(ds, cfg.weighting))
    members = np.arange(80)
    items = np.random.default_rng(0).integers(-1, 300, (80, 5))  # 300 distinct > 8 x 5: the gather path
    dense = als.score(members)
    want = np.where(items >= 0, np.take_along_axis(dense, np.maximum(items, 0), axis=1), -np.inf)
    np.testing.assert_allclose(als.score_items(members, items), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("read_share", [0.0, 1.0])  # 0: faiss for all but the sample; 1: pruned for all
def test_als_ranking_by_either_search_is_the_full_sort(monkeypatch, read_share: float) -> None:
    from training import als as als_module
    from training.dataset import seen_matrix
    from training.model_api import Model

    monkeypatch.setattr(als_module, "PRUNED_SAMPLE", 16)
    monkeypatch.setattr(als_module, "PRUNED_READ", read_share)
    ds = make_dataset(members=80, n_items=3000, seed=2)  # wider than the pruned search's first block
    cfg = TrainConfig.model_validate(SMALL)
    als = ALS(cfg.als).fit(ds, confidence_matrix(ds, cfg.weighting))
    # vectors in similar directions, lengths spread widely in no order: most members settle early
    rng = np.random.default_rng(1)
    lengths = rng.permutation(np.geomspace(0.5, 2, 3000))[:, None]
    items = np.array([1.0] + [0.0] * 7) + 0.6 * rng.standard_normal((3000, 8))
    als.item_factors = np.ascontiguousarray(items / np.linalg.norm(items, axis=1, keepdims=True) * lengths,
                                            dtype=np.float32)
    users = np.array([1.0] + [0.0] * 7) + 0.6 * rng.standard_normal((80, 8))
    als.member_factors = np.ascontiguousarray(users, dtype=np.float32)
    _, _, reads = als._recommend_pruned(np.arange(80), 5, None)
    assert reads.max() < 3000  # the bound settled them before the end
    members = np.arange(80)
    seen = seen_matrix(ds)
    for n in (5, 400, 3000):  # 3000: every item, fewer than n left for each member after exclusion
        fast_items, fast = als.recommend(members, n, exclude=seen)
        full_items, full = Model.recommend(als, members, n, exclude=seen)
        np.testing.assert_allclose(fast, full, rtol=1e-5, atol=1e-6)
        if n < 3000:  # deeper down, the shortest items' scores tie within float noise
            assert np.mean(fast_items == full_items) > 0.99
