"""Offline evaluation: train as `train` would on the split's training events, rank all items for
each held-out member (their training items excluded), score the holdout.
"""

from __future__ import annotations

import numpy as np

from training.als import ALS
from training.config import TrainConfig
from training.dataset import Split, confidence_matrix, seen_matrix
from training.metrics import ranking_metrics
from training.model_api import Blend, Model
from training.popularity import CategoryPopularity, GlobalPopularity, TrendingPopularity
from training.progress import Steps

ALL_MODELS = ("als", "popularity", "popularity_category", "trending", "als+popularity")


def fit_models(split: Split, config: TrainConfig, names: tuple[str, ...] = ALL_MODELS,
               steps: Steps | None = None) -> dict[str, Model]:
    """Fit the named models on the split's training part (blends reuse their fitted parts)."""
    steps = steps or Steps(quiet=True)
    ds = split.train
    with steps.step("confidence matrix"):
        matrix = confidence_matrix(ds, config.weighting)
    wanted = set(names)
    if "als+popularity" in wanted:
        wanted |= {"als", "popularity"}
    models: dict[str, Model] = {}
    if "als" in wanted:
        with steps.step("ALS", total=config.als.iterations) as advance:
            models["als"] = ALS(config.als, on_iteration=lambda _i: advance(1)).fit(ds, matrix)
    with steps.step("popularity models"):
        for cls in (GlobalPopularity, CategoryPopularity, TrendingPopularity):
            if cls.name in wanted:
                models[cls.name] = cls(config.weighting, config.popularity).fit(ds, matrix)
    if "als+popularity" in wanted:
        w = config.blend_popularity
        models["als+popularity"] = Blend("als+popularity", [(models["als"], 1 - w),
                                                            (models["popularity"], w)])
    return {name: models[name] for name in names if name in models}


def score_models(models: dict[str, Model], split: Split, ks: tuple[int, ...] = (10, 20),
                 steps: Steps | None = None) -> dict[str, dict[str, float]]:
    steps = steps or Steps(quiet=True)
    members = np.unique(split.test_members)
    truth = split.truth()
    exclude = seen_matrix(split.train)
    results = {}
    for name, model in models.items():
        with steps.step(f"rank all items: {name}"):
            recs, _ = model.recommend(members, max(ks), exclude=exclude)
            results[name] = ranking_metrics(recs, truth, members, ks, split.train.n_items)
    return results


def evaluate(split: Split, config: TrainConfig, ks: tuple[int, ...] = (10, 20),
             names: tuple[str, ...] = ALL_MODELS, steps: Steps | None = None) -> dict[str, dict[str, float]]:
    if len(split.test_members) == 0:
        from service.errors import MallrecError

        raise MallrecError("the split left nothing to evaluate: no held-out items for members "
                           "that have training events")
    models = fit_models(split, config, names, steps)
    return score_models(models, split, ks, steps)
