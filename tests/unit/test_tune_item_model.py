"""tune's item-model stage: RP3beta's params and the blend weight on the best ALS, the objective as
the blend, a share of the time budget, and the paired check blend against blend."""

from __future__ import annotations

import time

import pytest

from tests.unit.test_tune import planted
from training import tune as tune_module
from training.config import TrainConfig
from training.tune import tune
from training.tune_item_model import ITEM_SHARE, item_params

START = TrainConfig.model_validate({"als": {"factors": 8, "iterations": 3}, "weighting": {"half_life": None}})


@pytest.fixture(scope="module")
def data():
    return planted(members=200)[0]


def test_the_blend_is_the_objective_and_the_item_params_are_searched(data):
    r = tune(data, START, trials=6, minutes=None, seed=0, min_gain_se=0.0)
    assert len(r.trials) == 6 and len(r.item_trials) == 6  # the cap holds for each stage
    first = r.item_trials[0]
    # like with like: the starting config's own blend is the base score
    assert {k: first.params[k] for k in item_params(START.item_model)} == item_params(START.item_model)
    assert first.params["factors"] == START.als.factors
    assert r.base_score == first.score
    chosen = r.item_trials[r.item_best]
    assert r.best_score == chosen.score == max(t.score for t in r.item_trials if t.score is not None)
    if r.item_best:
        assert item_params(r.best_config.item_model) == pytest.approx(
            {k: chosen.params[k] for k in item_params(START.item_model)}, rel=1e-3)
    assert r.objective == "ndcg@10 of als+rp3beta"
    assert "ndcg@10 of als+rp3beta" in r.header() and "item-model trials" in r.summary()


def test_the_paired_check_keeps_the_starting_config_whole(data):
    r = tune(data, START, trials=4, minutes=None, seed=0, min_gain_se=1e9)
    assert r.best_config == START and r.item_best == 0 and r.best_score == r.base_score
    assert r.note and "item-model trial" in r.note


def test_the_item_stage_gets_its_share_of_the_minutes(data, monkeypatch):
    real, began = tune_module.search_item_model, []

    def spy(*args, **kwargs):
        began.append(time.perf_counter() - started)
        return real(*args, **kwargs)

    monkeypatch.setattr(tune_module, "search_item_model", spy)
    started = time.perf_counter()
    r = tune(data, START, minutes=0.05, seed=0)  # 3 s
    took = time.perf_counter() - started
    slowest = max(t.seconds for t in r.trials)
    assert len(r.item_trials) > 1, "the item stage searched"
    assert began[0] < (1 - ITEM_SHARE) * 3 + slowest + 0.2  # the ALS search left the last share
    assert took < 3 + 2 * max(t.seconds for t in r.item_trials) + 2


def test_no_item_model_means_the_als_objective(data):
    r = tune(data, START.model_copy(update={"item_model": START.item_model.model_copy(
        update={"max_paths": 1})}), trials=3, minutes=None)
    assert r.item_trials == [] and r.objective == "ndcg@10 of als"
