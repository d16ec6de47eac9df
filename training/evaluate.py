"""Offline evaluation: train as `train` would on the split's training events, rank all items for
each held-out member (their training items excluded), score the holdout.
"""

from __future__ import annotations

import numpy as np

from service.errors import MallrecError
from training.als import ALS, fit_final
from training.config import TrainConfig
from training.dataset import Split, confidence_matrix, fit_clock, seen_matrix
from training.metrics import ranking_metrics
from training.model_api import Blend, Model
from training.popularity import CategoryPopularity, GlobalPopularity, TrendingPopularity
from training.progress import Steps

ALL_MODELS = ("als", "popularity", "popularity_category", "trending", "als+popularity")


def fit_models(split: Split, config: TrainConfig, names: tuple[str, ...] = ALL_MODELS,
               steps: Steps | None = None, start: ALS | None = None) -> dict[str, Model]:
    """Fit the named models on the split's training part (blends reuse their fitted parts).

    ``start``: the re-ranker's first-stage ALS, which ALS continues from as `train` does.
    """
    steps = steps or Steps(quiet=True)
    ds = split.train
    with steps.step("confidence matrix"):
        matrix = confidence_matrix(ds, config.weighting)
    wanted = set(names)
    if "als+popularity" in wanted:
        wanted |= {"als", "popularity"}
    models: dict[str, Model] = {}
    if "als" in wanted:
        models["als"], _ = fit_final(ds, matrix, config, steps, start=start)
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
             names: tuple[str, ...] = ALL_MODELS, steps: Steps | None = None,
             notes: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Every model's metrics; with the re-ranker on, also `first_stage` and `rerank` rows.

    Trains in `train`'s order: the re-ranker (and its first stage before its cutoff) first, then
    ALS continued from that first stage. Why the re-ranker was not scored goes to ``notes``; what
    falls back for want of a clock (``fit_clock``, the label split) is said once through ``steps``.
    """
    if len(split.test_members) == 0:
        raise MallrecError("the split left nothing to evaluate: no held-out items for members "
                           "that have training events")
    steps = steps or Steps(quiet=True)
    config, fallbacks = fit_clock(split.train, config)
    for line in fallbacks.values():
        steps.info(line)
    reranker = None
    if config.reranker.enabled and "als" in names:
        from training.reranker import train_reranker

        reranker = train_reranker(split.train, config, steps)
    models = fit_models(split, config, names, steps, start=None if reranker is None else reranker.warm_start)
    results = score_models(models, split, ks, steps)
    if reranker is not None:
        if reranker.onnx is None:
            if notes is not None:
                notes.append(f"re-ranker not evaluated: {reranker.meta.get('skipped')}")
        else:
            from training.rerank_eval import score_rerank

            als = models["als"]
            assert isinstance(als, ALS)
            results.update(score_rerank(split, config, reranker, als, ks, steps))
    return results
