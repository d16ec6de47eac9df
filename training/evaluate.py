"""Offline evaluation: train as `train` would on the split's training events, rank all items for
each held-out member (their training items excluded), score the holdout.

Each model's scoring is a step named ``score <model>`` (``SCORE_STEP``), so its time is in the
`Steps` timings beside the fits'.
"""

from __future__ import annotations

import numpy as np

from service.errors import MallrecError
from training.als import ALS, fit_final
from training.config import TrainConfig
from training.dataset import Clock, Split, confidence_matrix, fit_clock, seen_matrix
from training.metrics import ranking_metrics
from training.model_api import Blend, Model, Ranked
from training.popularity import CategoryPopularity, GlobalPopularity, TrendingPopularity
from training.progress import Steps
from training.rp3beta import fit_item_model

ALL_MODELS = ("als", "rp3beta", "als+rp3beta", "popularity", "popularity_category", "trending",
              "als+popularity")
SCORE_STEP = "score {}"


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
    if "als+rp3beta" in wanted:
        wanted |= {"als", "rp3beta"}
    models: dict[str, Model] = {}
    if "als" in wanted:
        models["als"], _ = fit_final(ds, matrix, config, steps, start=start)
    if "rp3beta" in wanted:
        with steps.step("RP3beta"):
            fit = fit_item_model(ds, matrix, config.item_model)
        if fit.model is None:
            steps.info(f"rp3beta and als+rp3beta not evaluated: {fit.note}")
        else:
            models["rp3beta"] = fit.model
    with steps.step("popularity models"):
        for cls in (GlobalPopularity, CategoryPopularity, TrendingPopularity):
            if cls.name in wanted:
                models[cls.name] = cls(config.weighting, config.popularity).fit(ds, matrix)
    if "als+popularity" in wanted:
        w = config.blend_popularity
        models["als+popularity"] = Blend("als+popularity", [(models["als"], 1 - w),
                                                            (models["popularity"], w)])
    if "als+rp3beta" in wanted and "rp3beta" in models:
        w = config.item_model.blend
        models["als+rp3beta"] = Blend("als+rp3beta", [(models["als"], 1 - w), (models["rp3beta"], w)])
    return {name: models[name] for name in names if name in models}


def score_models(models: dict[str, Model], split: Split, ks: tuple[int, ...] = (10, 20),
                 steps: Steps | None = None) -> dict[str, dict[str, float]]:
    """Each model's metrics on the split; each model's ranking is a step (``SCORE_STEP``).

    A model that is also a blend's part ranks once, as deep as the blend's candidates: its own
    top n is the head of that list."""
    steps = steps or Steps(quiet=True)
    members = np.unique(split.test_members)
    truth = split.truth()
    exclude = seen_matrix(split.train)
    depth = {id(model): blend.candidates for blend in models.values() if isinstance(blend, Blend)
             for model, _ in blend.parts}
    ranked: dict[int, Ranked] = {}

    def shared(model: Model) -> Model:
        if id(model) not in depth:
            return model
        return ranked.setdefault(id(model), Ranked(model, depth[id(model)]))

    results = {}
    for name, model in models.items():
        if isinstance(model, Blend):
            model = Blend(model.name, [(shared(m), w) for m, w in model.parts], model.candidates)
        with steps.step(SCORE_STEP.format(name)):
            recs, _ = shared(model).recommend(members, max(ks), exclude=exclude)
            results[name] = ranking_metrics(recs, truth, members, ks, split.train.n_items)
        if isinstance(model, Blend) and model.full_rows:
            steps.info(f"{name}: {model.full_rows:,} of {len(members):,} members ranked over every "
                       f"item (their top candidates could not bound the blend)")
    return results


def scoring_times(timings: dict[str, float], names: list[str] | tuple[str, ...]) -> dict[str, float]:
    """Seconds each named model's scoring took, from a `Steps`' timings."""
    return {name: timings[SCORE_STEP.format(name)] for name in names if SCORE_STEP.format(name) in timings}


def evaluate(split: Split, config: TrainConfig, ks: tuple[int, ...] = (10, 20),
             names: tuple[str, ...] = ALL_MODELS, steps: Steps | None = None,
             notes: list[str] | None = None, clock: Clock | None = None) -> dict[str, dict[str, float]]:
    """Every model's metrics; with the re-ranker on, also `first_stage` and `rerank` rows.

    Trains in `train`'s order: the re-ranker (and its first stage before its cutoff) first, then
    ALS continued from that first stage. Why the re-ranker was not scored goes to ``notes``; what
    falls back for want of a clock (``fit_clock``, the label split) is said once through ``steps``.
    ``clock``: the whole data's (``read_clock``), read from the training part when not given.
    """
    if len(split.test_members) == 0:
        raise MallrecError("the split left nothing to evaluate: no held-out items for members "
                           "that have training events")
    steps = steps or Steps(quiet=True)
    config, fallbacks = fit_clock(split.train, config, clock)
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
