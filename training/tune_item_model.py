"""`mallrec tune`'s second stage: RP3beta's k, alpha and beta and its blend weight with ALS.

ALS is searched first on its own (training/tune.py); then, on the best ALS of that search, fitted
once, each trial fits RP3beta and scores the blend ALS (1 - w) + RP3beta (w), standardised scores,
exactly as `mallrec evaluate`'s ``als+rp3beta`` row ranks (training/model_api.Blend), on the same
validation members. ALS's own ranking is computed once and shared by every trial.

The starting config is scored the same way (its ALS with its item_model), so the final paired
comparison is blend against blend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from training.config import ItemModelConfig, TrainConfig
from training.model_api import Blend, Model, Ranked
from training.rp3beta import RP3beta, item_walks
from training.tune_search import Range, search

if TYPE_CHECKING:
    import optuna

    from training.tune import TrialRecord, Validation

#: Share of tune's time budget kept for this stage when the item model is on.
ITEM_SHARE = 0.25
#: Each part's top candidates the blend merges (as evaluate's blend).
CANDIDATES = 50


@dataclass(frozen=True)
class ItemSpace:
    """RP3beta's ranges, under the optuna names ``item_*`` (they widen like ALS's)."""

    ranges: Mapping[str, Range] = field(default_factory=lambda: {
        "item_k": Range(20, 400, integer=True, limits=(5, 1000), step=2.0),
        "item_alpha": Range(0.1, 1.5, limits=(0.01, 2.0)),
        "item_beta": Range(0.0, 1.0, log=False),
        "item_blend": Range(0.0, 1.0, log=False),
    })

    def with_ranges(self, ranges: Mapping[str, Range]) -> ItemSpace:
        return replace(self, ranges=dict(ranges))


def item_params(cfg: ItemModelConfig) -> dict[str, Any]:
    return {"item_k": cfg.k, "item_alpha": cfg.alpha, "item_beta": cfg.beta, "item_blend": cfg.blend}


def with_item(config: TrainConfig, params: Mapping[str, Any]) -> TrainConfig:
    """``config`` with a trial's item_model values (4 significant digits: they read better)."""
    return config.model_copy(update={"item_model": config.item_model.model_copy(update={
        "k": int(params["item_k"]), "alpha": float(f"{params['item_alpha']:.4g}"),
        "beta": float(f"{params['item_beta']:.4g}"), "blend": float(f"{params['item_blend']:.4g}")})})


def item_model_fits(val: Validation, config: TrainConfig) -> str | None:
    """None when the item model is on and within ``max_paths`` on the validation training part, else
    why this stage does not run."""
    cfg = config.item_model
    if not cfg.enabled:
        return "item_model.enabled is false: the objective is ALS alone"
    walks = int(item_walks(val.exclude).sum())  # the training part's (member, item) pattern
    if walks > cfg.max_paths:
        return (f"RP3beta not searched: {walks:,} walks > item_model.max_paths {cfg.max_paths:,}: "
                f"the objective is ALS alone")
    return None


class BlendScorer:
    """Scores ALS + RP3beta blends for one fitted ALS on the validation members."""

    def __init__(self, val: Validation, als: Model, config: TrainConfig):
        from training.dataset import confidence_matrix

        self.val = val
        self.als = Ranked(als, CANDIDATES)  # ranked once, shared by every trial
        self.matrix = confidence_matrix(val.split.train, config.weighting)

    def score(self, cfg: ItemModelConfig) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """Metrics at 10 and each member's hr@10 and ndcg@10."""
        from training.metrics import ranking_metrics
        from training.tune import per_member

        rp3 = RP3beta(cfg.k, cfg.alpha, cfg.beta).fit(None, self.matrix)
        blend = Blend("als+rp3beta", [(self.als, 1 - cfg.blend), (Ranked(rp3, CANDIDATES), cfg.blend)],
                      CANDIDATES)
        v = self.val
        recs, _ = blend.recommend(v.members, 10, exclude=v.exclude)
        each = per_member(recs, v.truth, v.members, 10)
        return (ranking_metrics(recs, v.truth, v.members, (10,), v.split.train.n_items),
                each["hr@10"], each["ndcg@10"])


@dataclass
class ItemStage:
    """What the stage found: trials (the first is the starting config's blend), the best's number."""

    trials: list[TrialRecord]
    best: int
    per_member: dict[int, np.ndarray]  # trial number -> per-member objective (base and best kept)


def search_item_model(val: Validation, metric: str, base: tuple[TrainConfig, Model],
                      best: tuple[TrainConfig, Model], trials: int | None,
                      timeout: Callable[[], float | None], seed: int,
                      say: Callable[[str], None]) -> ItemStage:
    """The starting config's blend (always scored), then RP3beta's params and the blend weight on
    the best ALS until ``trials`` or ``timeout``; each trial's params include its ALS config's."""
    from training.tune import TrialRecord
    from training.tune_space import base_params

    records: list[TrialRecord] = []
    kept: dict[int, np.ndarray] = {}
    state: dict[str, Any] = {"best": -np.inf, "number": 0}

    def run(config: TrainConfig, scorer: BlendScorer) -> float | None:
        number = len(records)
        params = {**base_params(config), **item_params(config.item_model)}
        t0 = time.perf_counter()
        try:
            metrics, hr, ndcg = scorer.score(config.item_model)
        except Exception as e:  # one bad corner of the space must not end the search
            records.append(TrialRecord(number, params, None, seconds=time.perf_counter() - t0,
                                       error=f"{type(e).__name__}: {e}"))
            say(f"item trial {number:>3}  failed: {records[-1].error}")
            return None
        score = float(metrics[metric])
        records.append(TrialRecord(number, params, score, {k: float(v) for k, v in metrics.items()},
                                   seconds=time.perf_counter() - t0))
        objective = ndcg if metric == "ndcg@10" else hr
        if number == 0:
            kept[0] = objective
        mark = ""
        if score > state["best"]:
            state.update(best=score, number=number)
            kept[number] = objective
            mark = " *"
        m = config.item_model
        say(f"item trial {number:>3}  {metric} {score:.4f}  hr@10 {metrics['hr@10']:.4f}  k={m.k} "
            f"alpha={m.alpha:.3g} beta={m.beta:.3g} blend={m.blend:.3g}  ({records[-1].seconds:.1f}s, "
            f"best {state['best']:.4f}){mark}")
        return score

    base_config, base_als = base
    best_config, best_als = best
    run(base_config, BlendScorer(val, base_als, base_config))
    scorer = BlendScorer(val, best_als, best_config)
    start = with_item(best_config, item_params(base_config.item_model))
    if best_config is not base_config and (trials is None or trials > 1):
        run(start, scorer)  # the starting item params on the best ALS (else trial 0 is that)

    def objective(trial: optuna.Trial, space: ItemSpace) -> float | None:
        params = {name: r.suggest(trial, name) for name, r in space.ranges.items()}
        return run(with_item(best_config, params), scorer)

    left = None if trials is None else trials - len(records)
    if left is None or left > 0:
        priors = [{**item_params(start.item_model), "item_blend": 0.5}]  # the start itself has run
        search(objective, ItemSpace(), trials=left, timeout=timeout, seed=seed, priors=priors,
               on_widen=say)
    return ItemStage(records, int(state["number"]), kept)
