"""`mallrec tune`: search ALS hyperparameters, event weights and time decay on a validation split.

The validation split is carved from the given events only, so a holdout file is never read: with a
clock (real time or an order) each member's last event is held out (`leave_last_out`), the target a
live service predicts; without one (every event at one time) a seeded random share of each member's
items (`leave_random_share`), since "last" would only mean last in the file. Every trial fits ALS
alone on the validation training part and scores a seeded sample of validation members with full
ranking (seen items excluded), exactly as `mallrec evaluate` scores ALS.

The search space (training/tune_space.py) is derived from the data, never from constants that fit
one data set.

The starting config is scored first (it counts as one trial), so tune never returns a config that is
worse on validation than the one it was given. Three generic priors follow (see `priors`), then optuna's
TPE sampler (training/tune_search.py: ranges whose best value sits at an edge are widened and the
search goes on), until ``minutes`` is up (no trial starts after it) or ``trials`` have run, whichever
is set and comes first. The best of many trials on a small validation set is partly luck, so the
winner replaces the starting config only when its paired per-member gain is more than
``min_gain_se`` standard errors (2 by default).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from service.errors import MallrecError
from training.config import TrainConfig
from training.dataset import Dataset, Split, fit_clock, leave_last_out, leave_random_share, read_clock
from training.progress import Steps
from training.tune_item_model import ITEM_SHARE, item_model_fits, search_item_model, with_item
from training.tune_search import search
from training.tune_space import (
    SearchSpace,
    apply_params,
    base_params,
    priors,
    search_space,
    suggest,
    time_scale,
)

if TYPE_CHECKING:
    import optuna

#: Metric the search maximises on the validation split (hr@10 is reported beside it).
DEFAULT_METRIC = "ndcg@10"
#: Validation members scored per trial (a seeded sample, the same for every trial).
DEFAULT_SAMPLE = 20_000
#: Time budget when neither minutes nor a trial cap is given.
DEFAULT_MINUTES = 20.0
#: Share of each member's items held out for validation when the data has no clock.
DEFAULT_TEST_SHARE = 0.2


# --------------------------------------------------------------------------- results


@dataclass
class TrialRecord:
    number: int  # 0 is the starting config
    params: dict[str, Any]  # what was tried (half-lives in seconds)
    score: float | None  # the objective on validation; None when the trial failed
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class TuneResult:
    best_config: TrainConfig
    best_score: float
    base_score: float | None  # the starting config's score (None if it failed)
    metric: str
    trials: list[TrialRecord]
    seconds: float
    validation: dict[str, Any]  # what the validation split and the data's time scale were
    best_number: int = 0  # the trial whose config is best_config
    note: str | None = None  # why the starting config was kept, when it was
    seed: int = 0
    widened: list[str] = field(default_factory=list)  # one line per widening of the search ranges
    # the item-model stage (training/tune_item_model.py): its trials (the first: the starting config's
    # blend), the best's number; empty when the objective is ALS alone
    item_trials: list[TrialRecord] = field(default_factory=list)
    item_best: int = 0

    @property
    def objective(self) -> str:
        return f"{self.metric} of als+rp3beta" if self.item_trials else f"{self.metric} of als"

    @property
    def best_trial(self) -> TrialRecord:
        return self.trials[self.best_number]

    def summary(self) -> str:
        best = self.best_trial
        done = [t for t in self.trials if t.score is not None]
        failed = len(self.trials) - len(done)
        items = f" + {len(self.item_trials)} item-model trials" if self.item_trials else ""
        lines = [f"tune: {len(self.trials)} ALS trials{items} ({failed} failed) in {self.seconds:.0f}s, "
                 f"objective {self.objective} on {self.validation['members_scored']:,} validation members "
                 f"({self.validation['split']} of the given events)"]
        if self.base_score is not None:
            gain = (self.best_score / self.base_score - 1) * 100 if self.base_score > 0 else float("inf")
            lines.append(f"starting config {self.metric} {self.base_score:.4f} -> best {self.best_score:.4f} "
                         f"({gain:+.0f}%), trial {best.number}")
        else:
            lines.append(f"best {self.metric} {self.best_score:.4f}, trial {best.number}")
        shown = self.item_trials[self.item_best] if self.item_trials else best
        clock = self.validation.get("clock", "time")
        rows = [(k, _fmt(k, v, clock)) for k, v in shown.params.items()]
        rows += [(f"val {k}", f"{v:.4f}") for k, v in shown.metrics.items() if k != "members"]
        width = max(len(k) for k, _ in rows)
        lines.append("best trial:")
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        top = sorted(done, key=lambda t: -(t.score or 0.0))[:5]  # done: every score is set
        lines.append(f"top {'ALS ' if self.item_trials else ''}trials: "
                     + ", ".join(f"#{t.number} {t.score:.4f}" for t in top))
        if self.item_trials:
            scored = [t for t in self.item_trials if t.score is not None]
            ranked = sorted(scored, key=lambda t: -(t.score or 0.0))
            lines.append("top item-model trials (the blend): "
                         + ", ".join(f"#{t.number} {t.score:.4f}" for t in ranked[:5]))
        if self.note:
            lines.append("note: " + self.note)
        return "\n".join(lines)

    def header(self) -> str:
        """Comment lines for the written config: how it was found, so a run can be repeated."""
        v = self.validation
        items = f" + {len(self.item_trials)} item-model trials" if self.item_trials else ""
        lines = [f"written by `mallrec tune` (seed {self.seed}): {len(self.trials)} ALS trials{items} in "
                 f"{self.seconds:.0f}s",
                 f"validation: {v['split']}, {v['held_out_pairs']:,} held-out pairs, "
                 f"{v['members_scored']:,} members scored; objective {self.objective}"]
        base = "failed" if self.base_score is None else f"{self.base_score:.4f}"
        which = (f"ALS trial {self.best_number}, item-model trial {self.item_best}" if self.item_trials
                 else f"trial {self.best_number}")
        lines.append(f"starting config {base} -> this config {self.best_score:.4f} ({which})")
        shown = self.item_trials[self.item_best] if self.item_trials else self.best_trial
        clock = v.get("clock", "time")
        lines.append("chosen: " + ", ".join(f"{k}={_fmt(k, x, clock)}" for k, x in shown.params.items()))
        lines += self.widened
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def human_duration(seconds: float | None, clock: str = "time") -> str:
    """3 significant digits in the largest unit that fits: '1.37s', '11h', '2.63d'. On an order-only
    clock ``ts`` counts positions in a member's history, so a span is a number of positions."""
    if seconds is None:
        return "off"
    if clock == "order":
        return f"{seconds:,.0f} positions" if seconds >= 10 else f"{seconds:.3g} positions"
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def _fmt(key: str, value: Any, clock: str = "time") -> str:
    if key in ("half_life", "member_half_life"):
        if value is None:
            return "off"
        if clock == "order":
            return human_duration(value, clock)
        return f"{human_duration(value)} ({value:.6g} s)"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------- evaluation


class Validation:
    """The validation split and the sampled members every trial is scored on."""

    def __init__(self, ds: Dataset, sample: int, seed: int, test_share: float = DEFAULT_TEST_SHARE):
        # without a clock "last" would mean last in the file: a seeded random share per member instead
        if read_clock(ds.events).has_order:
            self.name = "leave-last-out"
            self.split: Split = leave_last_out(ds)
        else:
            self.name = f"random {test_share:.0%} of each member's items (seed {seed})"
            self.split = leave_random_share(ds, test_share, seed)
        if len(self.split.test_members) == 0:
            raise MallrecError(f"tune needs members with at least two events: the {self.name} split "
                               f"left nothing to validate on")
        members = np.unique(self.split.test_members)
        if sample and len(members) > sample:
            members = np.sort(np.random.default_rng(seed).choice(members, sample, replace=False))
        self.members = members
        from training.dataset import seen_matrix

        self.truth = self.split.truth()
        self.exclude = seen_matrix(self.split.train)

    def score(self, config: TrainConfig,
              on_iteration: Callable[[int], None] | None = None) -> dict[str, float]:
        from training.als import ALS
        from training.dataset import confidence_matrix
        from training.metrics import ranking_metrics

        train = self.split.train
        matrix = confidence_matrix(train, config.weighting)
        model = ALS(config.als, config.weighting, on_iteration=on_iteration).fit(train, matrix)
        self.last_model = model
        if not (np.isfinite(model.member_factors).all() and np.isfinite(model.item_factors).all()):
            raise FloatingPointError("ALS diverged (non-finite factors)")
        recs, _ = model.recommend(self.members, 10, exclude=self.exclude)
        self.last = per_member(recs, self.truth, self.members, 10)
        return ranking_metrics(recs, self.truth, self.members, (10,), train.n_items)


def per_member(recs: np.ndarray, truth: sp.csr_matrix, members: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """hr@k and ndcg@k of each member (as `training.metrics` defines them), for paired comparisons."""
    rows = truth[members]
    n_truth = np.diff(rows.indptr)
    top = recs[:, :k]
    hit = np.zeros(top.shape, dtype=bool)
    for i in range(len(members)):
        hit[i] = np.isin(top[i], rows.indices[rows.indptr[i]:rows.indptr[i + 1]])
    discounts = 1.0 / np.log2(np.arange(top.shape[1]) + 2)
    idcg = np.cumsum(1.0 / np.log2(np.arange(k) + 2))[np.clip(n_truth, 1, k) - 1]
    has = n_truth > 0
    return {f"hr@{k}": np.any(hit, axis=1)[has].astype(np.float64),
            f"ndcg@{k}": ((hit * discounts).sum(axis=1) / idcg)[has]}


# --------------------------------------------------------------------------- the search


def tune(ds: Dataset, base: TrainConfig | None = None, trials: int | None = None,
         minutes: float | None = DEFAULT_MINUTES, seed: int = 0, steps: Steps | None = None,
         metric: str = DEFAULT_METRIC, sample: int = DEFAULT_SAMPLE, min_gain_se: float = 2.0,
         test_share: float = DEFAULT_TEST_SHARE) -> TuneResult:
    """Search the space on a validation split of ``ds``: at most ``trials`` ALS fits (the starting
    config is the first; None: no cap) and no trial starts after ``minutes`` (None: no limit)."""
    if trials is None and minutes is None:
        raise MallrecError("tune needs a budget: minutes, a trial cap, or both")
    if trials is not None and trials < 1:
        raise MallrecError("tune needs a budget of at least one trial")
    if minutes is not None and minutes <= 0:
        raise MallrecError("tune needs a positive time budget")
    if not 0 < test_share < 1:
        raise MallrecError(f"the validation share must be between 0 and 1 (exclusive), not {test_share}")
    if metric not in ("ndcg@10", "hr@10"):
        raise MallrecError(f"tune optimises ndcg@10 or hr@10, not {metric!r}")
    base = base or TrainConfig()
    steps = steps or Steps(quiet=True)
    started = time.perf_counter()
    deadline = None if minutes is None else started + minutes * 60
    clock = read_clock(ds.events)
    _say(steps, clock.line)
    base, _ = fit_clock(ds, base)  # no clock: decay off in the start and the written config (the line above)

    with steps.step("validation split (of the given events)"):
        val = Validation(ds, sample, seed, test_share)
        scale = time_scale(val.split.train)
        space = search_space(val.split.train, scale, clock=clock.kind)
    unit = clock.kind
    scales = (f"median gap {human_duration(scale.member_gap, unit)}, median history "
              f"{human_duration(scale.member_span, unit)}, data span {human_duration(scale.data_span, unit)}"
              if "member" in space.decays else "none (no clock)")
    _say(steps, f"validating on {len(val.members):,} members ({val.name}); time scale: {scales}; "
                f"event types {', '.join(space.event_types)}")
    item_note = item_model_fits(val, base)
    als_deadline = deadline
    if item_note is None:
        if deadline is not None:
            als_deadline = deadline - ITEM_SHARE * (deadline - started)
        _say(steps, f"objective: {metric} of the ALS + RP3beta blend; ALS is searched first on its own, "
                    f"then RP3beta's k, alpha, beta and the blend weight on the best ALS"
                    + (f" (the last {ITEM_SHARE:.0%} of the time)" if deadline is not None else ""))
    else:
        _say(steps, item_note)

    records: list[TrialRecord] = []
    best: dict[str, Any] = {"score": -math.inf, "config": base}
    paired: dict[str, np.ndarray] = {}  # per-member objective of the starting config and of the best
    fitted: dict[str, Any] = {}  # the starting config's and the best trial's ALS, for the item stage

    def run_one(params: dict[str, Any], config: TrainConfig) -> float | None:
        number = len(records)
        t0 = time.perf_counter()
        try:
            if steps.quiet:
                metrics = val.score(config)
            else:
                with steps.console.status(f"trial {number}: fitting ALS ({config.als.factors} factors, "
                                          f"{config.als.iterations} iterations)"):
                    metrics = val.score(config)
        except Exception as e:  # one bad corner of the space must not end a long search
            rec = TrialRecord(number, params, None, seconds=time.perf_counter() - t0,
                              error=f"{type(e).__name__}: {e}")
            records.append(rec)
            _say(steps, f"trial {number:>3}  failed: {rec.error}")
            return None
        score = float(metrics[metric])
        rec = TrialRecord(number, params, score, {k: float(v) for k, v in metrics.items()},
                          seconds=time.perf_counter() - t0)
        records.append(rec)
        if number == 0:
            paired["base"] = val.last[metric]
            fitted["base"] = getattr(val, "last_model", None)
        if score > best["score"]:
            best.update(score=score, config=config, number=number)
            paired["best"] = val.last[metric]
            fitted["best"] = getattr(val, "last_model", None)
        _say(steps, _trial_line(rec, metric, best["score"], number == best.get("number"), clock.kind))
        return score

    # trial 0: the starting config, so the result is never worse than it on validation
    base_score = run_one(base_params(base), base)

    def objective(trial: optuna.Trial, space: SearchSpace) -> float | None:
        params = suggest(trial, space)
        return run_one(params, apply_params(base, params, space))

    def left() -> float | None:
        return None if deadline is None else deadline - time.perf_counter()

    def als_left() -> float | None:
        return None if als_deadline is None else als_deadline - time.perf_counter()

    widened: list[str] = []

    def on_widen(line: str) -> None:
        widened.append(line)
        _say(steps, line)

    if trials is None or trials > 1:
        search(objective, space, trials=None if trials is None else trials - 1, timeout=als_left, seed=seed,
               priors=priors(base, space, scale), on_widen=on_widen)

    note = None
    if best["score"] == -math.inf:
        errors = "; ".join(sorted({r.error for r in records if r.error}))
        raise MallrecError(f"every tune trial failed: {errors}")
    stage = None
    if item_note is None and base_score is not None:
        stage = search_item_model(val, metric, (base, fitted["base"]), (best["config"], fitted["best"]),
                                  trials, left, seed, lambda line: _say(steps, line))
        done = stage.trials[stage.best]
        if done.score is None:  # every blend failed: nothing to compare, the starting config stays
            stage = None
            best.update(score=base_score, config=base, number=0)
        else:
            # compare like with like: the starting config's blend against the best blend
            base_score = stage.trials[0].score  # item trial 0: the starting config's blend
            chosen = base if stage.best == 0 else with_item(best["config"], done.params)  # on the best ALS
            best.update(score=done.score, config=chosen, number=0 if stage.best == 0 else best["number"])
            paired["base"], paired["best"] = stage.per_member[0], stage.per_member[stage.best]
    improved = best["number"] != 0 if stage is None else stage.best != 0
    if base_score is not None and improved:
        # The best of many trials on a small validation set is partly luck: keep the starting config
        # unless the winner beats it by more than `min_gain_se` standard errors of the paired gain.
        gain = paired["best"] - paired["base"]
        se = float(gain.std(ddof=1) / math.sqrt(len(gain))) if len(gain) > 1 else math.inf
        if not gain.mean() > min_gain_se * se:
            which = f"item-model trial #{stage.best}" if stage is not None else f"trial #{best['number']}"
            note = (f"the best {which} ({metric} {best['score']:.4f}) beats the starting "
                    f"config by {gain.mean():+.4f}, less than {min_gain_se:g} standard errors "
                    f"({se:.4f}) on {len(gain):,} validation members: keeping the starting config")
            _say(steps, note)
            best.update(score=base_score, config=base, number=0)
            if stage is not None:
                stage.best = 0
    result = TuneResult(best_config=best["config"], best_score=float(best["score"]), base_score=base_score,
                        metric=metric, trials=records, seconds=time.perf_counter() - started,
                        best_number=int(best["number"]), note=note, seed=seed, widened=widened,
                        item_trials=[] if stage is None else stage.trials,
                        item_best=0 if stage is None else stage.best,
                        validation={"split": val.name, "clock": clock.kind,
                                    "members_scored": int(len(val.members)),
                                    "held_out_pairs": int(len(val.split.test_members)),
                                    **scale.as_dict()})
    return result


def _say(steps: Steps, line: str) -> None:
    """One line, never wrapped (a trial per line reads as a table in a log)."""
    if not steps.quiet:
        steps.console.print(line, highlight=False, soft_wrap=True, markup=False)


def _trial_line(rec: TrialRecord, metric: str, best: float, is_best: bool, clock: str = "time") -> str:
    p = rec.params
    decay = "off" if p.get("half_life") is None else \
        f"{p['decay_from']} {human_duration(p['half_life'], clock)}"
    if p.get("member_half_life"):
        decay += f" member={human_duration(p['member_half_life'], clock)}"
    attrs = f" attr={p['attribute_weight']:.3g}" if p.get("attribute_weight") else ""
    weights = " ".join(f"{k[7:]}={v:.3g}" for k, v in p.items() if k.startswith("weight_"))
    mark = " *" if is_best else ""
    return (f"trial {rec.number:>3}  {metric} {rec.score:.4f}  hr@10 {rec.metrics.get('hr@10', 0):.4f}  "
            f"f={p['factors']} reg={p['regularization']:.3g} alpha={p['alpha']:.3g} it={p['iterations']} "
            f"decay={decay}{attrs} log={'on' if p['log_scale'] else 'off'} {weights}  "
            f"({rec.seconds:.1f}s, best {best:.4f}){mark}")
