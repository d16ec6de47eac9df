"""The final ALS continues from the re-ranker's first stage instead of a second fit from scratch."""

import numpy as np
import pytest

from service import model_bundle as mb
from tests.factories import make_dataset
from training.als import ALS
from training.config import AlsConfig, TrainConfig
from training.dataset import confidence_matrix
from training.pipeline import train

CFG = TrainConfig.model_validate({
    "als": {"factors": 8, "iterations": 12, "warm_iterations": 4}, "neighbours": {"k": 10},
    "reranker": {"trees": 10, "leaves": 7, "min_data_in_leaf": 5, "candidates": 30, "min_groups": 20},
})


@pytest.fixture(scope="module")
def ds():
    return make_dataset(members=160, n_items=80, seed=4)


def test_staged_sweeps_add_up_to_one_fit():
    assert AlsConfig(iterations=15, warm_iterations=5).staged() == (10, 5)
    assert AlsConfig(iterations=15, warm_iterations=0).staged() == (15, 0)
    assert AlsConfig(iterations=4, warm_iterations=5).staged() == (4, 5)  # no saving possible


def test_a_warm_start_continues_from_the_given_factors(ds):
    matrix = confidence_matrix(ds, CFG.weighting)
    converged = ALS(CFG.als).fit(ds, matrix, iterations=30)
    warm = ALS(CFG.als).fit(ds, matrix, iterations=1, start=converged)
    cold = ALS(CFG.als).fit(ds, matrix, iterations=1)

    def gap(m: ALS) -> float:
        return float(np.abs(m.item_factors @ m.member_factors.T
                            - converged.item_factors @ converged.member_factors.T).mean())

    assert gap(warm) < 0.1 * gap(cold)


def test_a_warm_start_of_the_wrong_shape_is_refused(ds):
    matrix = confidence_matrix(ds, CFG.weighting)
    other = ALS(CFG.als.model_copy(update={"factors": 4})).fit(ds, matrix, iterations=1)
    with pytest.raises(ValueError, match="warm start"):
        ALS(CFG.als).fit(ds, matrix, start=other)


def test_train_continues_from_the_rerankers_first_stage(ds, tmp_path):
    manifest = mb.load(train(ds, CFG, tmp_path / "a")).manifest
    assert manifest["reranker"].get("skipped") is None
    assert manifest["als_fit"] == {"warm_start": True, "iterations": 4}


@pytest.mark.parametrize("update", [{"reranker": {"enabled": False}}, {"als": {"warm_iterations": 0}}])
def test_train_fits_from_scratch_without_a_first_stage_or_warm_starts(ds, tmp_path, update):
    cfg = TrainConfig.model_validate({**CFG.model_dump(), **{
        k: {**CFG.model_dump()[k], **v} for k, v in update.items()}})
    manifest = mb.load(train(ds, cfg, tmp_path / "b")).manifest
    assert manifest["als_fit"] == {"warm_start": False, "iterations": 12}
