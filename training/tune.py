"""`mallrec tune`: search ALS hyperparameters, event weights and time decay on a validation split.

The validation split is carved from the given events only (each member's last event is held out,
`leave_last_out`), so a holdout file is never read. Every trial fits ALS alone on the validation
training part and scores a seeded sample of validation members with full ranking (seen items
excluded), exactly as `mallrec evaluate` scores ALS.

The search space is generic: it is derived from the data, never from constants that fit one data set.

- factors, regularization, alpha, iterations: wide log ranges (factors capped by the catalogue size);
- event weights: only for event types present in the data, as ratios of the most valuable present
  type (a single event type gets no weight search: alpha already scales it);
- time decay: off, from the member's own newest event, or from the newest event overall. Half-lives
  are drawn relative to the data's own clock: between half the median gap of a member's consecutive
  events and twice the median member history span (member decay), or a fraction of the data's span
  (global decay). The config records them in absolute seconds, as `train` reads them.
- log_scale on or off;
- member re-solve (with decay on): off, or a half-life 0.05-1x the decay's (`member_half_life`);
- catalogue attributes as pseudo-members (when items have categories, brands or tags): off, or a
  confidence of 0.01-10 (`als.attribute_weight`).

The starting config is scored first (it counts as one trial), so tune never returns a config that is
worse on validation than the one it was given. Three generic priors follow (see `priors`), then optuna's
TPE sampler, bounded by ``trials`` and ``minutes`` (no trial starts after the time is up). The best of
many trials on a small validation set is partly luck, so the winner replaces the starting config only
when its paired per-member gain is more than ``min_gain_se`` standard errors (2 by default).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import MallrecError
from service.model_bundle import EVENT_TYPES
from training.config import TrainConfig
from training.dataset import Dataset, Split, leave_last_out
from training.progress import Steps

#: Metric the search maximises on the validation split (hr@10 is reported beside it).
DEFAULT_METRIC = "ndcg@10"
#: Validation members scored per trial (a seeded sample, the same for every trial).
DEFAULT_SAMPLE = 20_000
#: Largest number of factors tried (and never more than half the catalogue): a trial's cost grows
#: with factors squared, and past a few hundred implicit-feedback ALS rarely gains.
MAX_FACTORS = 256


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

    @property
    def best_trial(self) -> TrialRecord:
        return self.trials[self.best_number]

    def summary(self) -> str:
        best = self.best_trial
        done = [t for t in self.trials if t.score is not None]
        failed = len(self.trials) - len(done)
        lines = [f"tune: {len(self.trials)} trials ({failed} failed) in {self.seconds:.0f}s, "
                 f"objective {self.metric} on {self.validation['members_scored']:,} validation members "
                 f"(leave-last-out of the given events)"]
        if self.base_score is not None:
            gain = (self.best_score / self.base_score - 1) * 100 if self.base_score > 0 else float("inf")
            lines.append(f"starting config {self.metric} {self.base_score:.4f} -> best {self.best_score:.4f} "
                         f"({gain:+.0f}%), trial {best.number}")
        else:
            lines.append(f"best {self.metric} {self.best_score:.4f}, trial {best.number}")
        rows = [(k, _fmt(k, v)) for k, v in best.params.items()]
        rows += [(f"val {k}", f"{v:.4f}") for k, v in best.metrics.items() if k != "members"]
        width = max(len(k) for k, _ in rows)
        lines.append("best trial:")
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        top = sorted(done, key=lambda t: -t.score)[:5]
        lines.append("top trials: " + ", ".join(f"#{t.number} {t.score:.4f}" for t in top))
        if self.note:
            lines.append("note: " + self.note)
        return "\n".join(lines)


def human_duration(seconds: float | None) -> str:
    """3 significant digits in the largest unit that fits: '1.37s', '11h', '2.63d'."""
    if seconds is None:
        return "off"
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def _fmt(key: str, value: Any) -> str:
    if key == "half_life":
        return "off" if value is None else f"{human_duration(value)} ({value:.6g} s)"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------- time scale


@dataclass(frozen=True)
class TimeScale:
    """The data's own clock: typical gap between a member's events, typical history span, data span."""

    member_gap: float  # median positive gap between a member's consecutive events (seconds)
    member_span: float  # median (newest - oldest) over members with 2+ events
    data_span: float  # newest - oldest event overall

    def as_dict(self) -> dict[str, float]:
        return {"member_gap_s": self.member_gap, "member_span_s": self.member_span,
                "data_span_s": self.data_span}


def time_scale(ds: Dataset) -> TimeScale:
    ev = ds.events
    if len(ev) == 0:
        return TimeScale(1.0, 1.0, 1.0)
    order = np.lexsort((ev.ts, ev.member))
    m, ts = ev.member[order], ev.ts[order]
    same = m[1:] == m[:-1]
    gaps = (ts[1:] - ts[:-1])[same]
    gaps = gaps[gaps > 0]
    gap = float(np.median(gaps)) if len(gaps) else 1.0
    starts = np.r_[0, np.flatnonzero(~same) + 1]
    ends = np.r_[starts[1:], len(m)] - 1
    spans = (ts[ends] - ts[starts]).astype(np.float64)
    spans = spans[spans > 0]
    span = float(np.median(spans)) if len(spans) else gap
    data_span = float(max(ts.max() - ts.min(), 1))
    return TimeScale(member_gap=max(gap, 1.0), member_span=max(span, gap, 1.0), data_span=data_span)


# --------------------------------------------------------------------------- search space


@dataclass(frozen=True)
class SearchSpace:
    """Ranges for one data set (derived from its size, event types and clock)."""

    factors: tuple[int, int]
    regularization: tuple[float, float] = (1e-2, 100.0)
    alpha: tuple[float, float] = (0.3, 300.0)
    iterations: tuple[int, int] = (5, 25)
    event_types: tuple[str, ...] = ()  # present in the data, least valuable first
    member_half_life: tuple[float, float] = (1.0, 2.0)
    global_half_life: tuple[float, float] = (1.0, 2.0)
    weight_ratio: tuple[float, float] = (0.01, 2.0)  # other types' weight / the reference type's
    member_ratio: tuple[float, float] = (0.05, 1.0)  # member re-solve half-life / the decay half-life
    attribute_weight: tuple[float, float] = (0.01, 10.0)  # attribute pseudo-members' confidence
    has_attributes: bool = False  # the catalogue has categories, brands or tags
    log_weight: tuple[float, float] = (1.0, 100.0)  # reference weight when log_scale is on

    @property
    def reference(self) -> str:
        return self.event_types[-1]


def search_space(ds: Dataset, scale: TimeScale) -> SearchSpace:
    present = np.bincount(ds.events.event, minlength=len(EVENT_TYPES)) > 0
    types = tuple(e for e, p in zip(EVENT_TYPES, present, strict=True) if p)
    hi = int(min(MAX_FACTORS, max(8, ds.n_items // 2)))
    lo = int(min(16, hi))
    member_lo = 0.5 * scale.member_gap
    member_hi = max(2.0 * scale.member_span, 8.0 * member_lo)
    global_lo = scale.data_span / 100
    global_hi = 2.0 * scale.data_span
    it = ds.items
    has_attributes = bool(np.any(it.category != "") or np.any(it.brand != "") or np.any(it.tags != ""))
    return SearchSpace(factors=(lo, hi), event_types=types or ("purchase",),
                       member_half_life=(member_lo, member_hi), global_half_life=(global_lo, global_hi),
                       has_attributes=has_attributes)


def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    """One point of the space, as flat readable params (half-lives in seconds)."""
    p: dict[str, Any] = {}
    p["factors"] = trial.suggest_int("factors", *space.factors, log=True)
    p["regularization"] = trial.suggest_float("regularization", *space.regularization, log=True)
    p["alpha"] = trial.suggest_float("alpha", *space.alpha, log=True)
    p["iterations"] = trial.suggest_int("iterations", *space.iterations)
    decay = trial.suggest_categorical("decay", ["off", "member", "global"])
    p["decay_from"] = decay
    if decay == "member":
        p["half_life"] = trial.suggest_float("member_half_life", *space.member_half_life, log=True)
    elif decay == "global":
        p["half_life"] = trial.suggest_float("global_half_life", *space.global_half_life, log=True)
    else:
        p["half_life"] = None
    p["member_half_life"] = None
    if p["half_life"] is not None and trial.suggest_categorical("member_resolve", [False, True]):
        p["member_half_life"] = p["half_life"] * trial.suggest_float("member_ratio", *space.member_ratio,
                                                                      log=True)
    p["attribute_weight"] = 0.0
    if space.has_attributes and trial.suggest_categorical("attributes", [False, True]):
        p["attribute_weight"] = trial.suggest_float("attribute_weight", *space.attribute_weight, log=True)
    p["log_scale"] = trial.suggest_categorical("log_scale", [False, True])
    ref = space.reference
    p[f"weight_{ref}"] = (trial.suggest_float("log_weight", *space.log_weight, log=True)
                          if p["log_scale"] else 1.0)
    for e in space.event_types[:-1]:
        ratio = trial.suggest_float(f"ratio_{e}", *space.weight_ratio, log=True)
        p[f"weight_{e}"] = ratio * p[f"weight_{ref}"]
    return p


def priors(base: TrainConfig, space: SearchSpace, scale: TimeScale) -> list[dict[str, Any]]:
    """Generic first points for the search (relative to the data, fitted to no data set): a
    mid-sized ALS with a common confidence scale, once without decay, once with a member-relative
    half-life of two typical gaps ("the next item is most like the latest ones"), and once more with
    member vectors re-solved at a quarter of that half-life and catalogue attributes weighted like one
    event. Event-type ratios start from the starting config's."""
    ref = getattr(base.weighting.events, space.reference) or 1.0
    common: dict[str, Any] = {
        "factors": int(np.clip(128, *space.factors)), "regularization": 1.0, "alpha": 10.0,
        "iterations": 15, "log_scale": False}
    for e in space.event_types[:-1]:
        common[f"ratio_{e}"] = float(np.clip(getattr(base.weighting.events, e) / ref, *space.weight_ratio))
    half_life = float(np.clip(2 * scale.member_gap, *space.member_half_life))
    plain: dict[str, Any] = {"member_resolve": False}
    if space.has_attributes:
        plain["attributes"] = False
    member = {**common, "decay": "member", "member_half_life": half_life}
    sharper = {**member, "member_resolve": True, "member_ratio": 0.25}
    if space.has_attributes:
        sharper.update(attributes=True, attribute_weight=1.0)
    return [{**member, **plain}, {**common, "decay": "off", **plain}, sharper]


def apply_params(base: TrainConfig, params: dict[str, Any], space: SearchSpace) -> TrainConfig:
    """The starting config with a trial's params set (absent event types keep their ratio to the
    reference type, so the config still reads sensibly on data that has them)."""
    raw = base.model_dump(mode="python")
    als = raw["als"]
    for k in ("factors", "regularization", "alpha", "iterations"):
        als[k] = params[k]
    als["attribute_weight"] = float(f"{params.get('attribute_weight', 0.0):.4g}")
    w = raw["weighting"]
    hl, mhl = params["half_life"], params.get("member_half_life")
    w["half_life"] = None if hl is None else float(f"{hl:.4g}")  # seconds, 4 digits read better
    w["member_half_life"] = None if mhl is None else float(f"{mhl:.4g}")
    if params["decay_from"] in ("member", "global"):
        w["decay_from"] = params["decay_from"]
    w["log_scale"] = params["log_scale"]
    ref = space.reference
    old_ref = w["events"][ref]
    new_ref = params[f"weight_{ref}"]
    for e in EVENT_TYPES:
        if f"weight_{e}" in params:
            w["events"][e] = float(params[f"weight_{e}"])
        elif old_ref > 0:
            w["events"][e] = float(w["events"][e] * new_ref / old_ref)
    return TrainConfig.model_validate(raw)


def base_params(base: TrainConfig) -> dict[str, Any]:
    w = base.weighting
    p: dict[str, Any] = {"factors": base.als.factors, "regularization": base.als.regularization,
                         "alpha": base.als.alpha, "iterations": base.als.iterations,
                         "decay_from": w.decay_from if w.half_life else "off", "half_life": w.half_life,
                         "log_scale": w.log_scale, "member_half_life": w.member_half_life,
                         "attribute_weight": base.als.attribute_weight}
    for e in EVENT_TYPES:
        p[f"weight_{e}"] = getattr(w.events, e)
    return p


# --------------------------------------------------------------------------- evaluation


class Validation:
    """The validation split and the sampled members every trial is scored on."""

    def __init__(self, ds: Dataset, sample: int, seed: int):
        self.split: Split = leave_last_out(ds)
        if len(self.split.test_members) == 0:
            raise MallrecError("tune needs members with at least two events: leave-last-out left "
                               "nothing to validate on")
        members = np.unique(self.split.test_members)
        if sample and len(members) > sample:
            members = np.sort(np.random.default_rng(seed).choice(members, sample, replace=False))
        self.members = members
        from training.dataset import seen_matrix

        self.truth = self.split.truth()
        self.exclude = seen_matrix(self.split.train)

    def score(self, config: TrainConfig, on_iteration=None) -> dict[str, float]:
        from training.als import ALS
        from training.dataset import confidence_matrix
        from training.metrics import ranking_metrics

        train = self.split.train
        matrix = confidence_matrix(train, config.weighting)
        model = ALS(config.als, config.weighting, on_iteration=on_iteration).fit(train, matrix)
        if not (np.isfinite(model.member_factors).all() and np.isfinite(model.item_factors).all()):
            raise FloatingPointError("ALS diverged (non-finite factors)")
        recs, _ = model.recommend(self.members, 10, exclude=self.exclude)
        self.last = per_member(recs, self.truth, self.members, 10)
        return ranking_metrics(recs, self.truth, self.members, (10,), train.n_items)


def per_member(recs: np.ndarray, truth, members: np.ndarray, k: int) -> dict[str, np.ndarray]:
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
    return {f"hr@{k}": hit.any(axis=1)[has].astype(np.float64),
            f"ndcg@{k}": ((hit * discounts).sum(axis=1) / idcg)[has]}


# --------------------------------------------------------------------------- the search


def tune(ds: Dataset, base: TrainConfig | None = None, trials: int = 30, minutes: float = 20.0,
         seed: int = 0, steps: Steps | None = None, metric: str = DEFAULT_METRIC,
         sample: int = DEFAULT_SAMPLE, min_gain_se: float = 2.0) -> TuneResult:
    """Search the space on a leave-last-out split of ``ds``; at most ``trials`` ALS fits (the
    starting config is the first) and no trial starts after ``minutes``."""
    import optuna

    if trials < 1:
        raise MallrecError("tune needs a budget of at least one trial")
    if minutes <= 0:
        raise MallrecError("tune needs a positive time budget")
    if metric not in ("ndcg@10", "hr@10"):
        raise MallrecError(f"tune optimises ndcg@10 or hr@10, not {metric!r}")
    base = base or TrainConfig()
    steps = steps or Steps(quiet=True)
    started = time.perf_counter()
    deadline = started + minutes * 60

    with steps.step("validation split (leave-last-out of the given events)"):
        val = Validation(ds, sample, seed)
        scale = time_scale(val.split.train)
        space = search_space(val.split.train, scale)
    _say(steps, f"validating on {len(val.members):,} members; time scale: median gap "
               f"{human_duration(scale.member_gap)}, median history {human_duration(scale.member_span)}, "
               f"data span {human_duration(scale.data_span)}; event types {', '.join(space.event_types)}")

    records: list[TrialRecord] = []
    best: dict[str, Any] = {"score": -math.inf, "config": base}
    paired: dict[str, np.ndarray] = {}  # per-member objective of the starting config and of the best

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
        if score > best["score"]:
            best.update(score=score, config=config, number=number)
            paired["best"] = val.last[metric]
        _say(steps, _trial_line(rec, metric, best["score"], number == best.get("number")))
        return score

    # trial 0: the starting config, so the result is never worse than it on validation
    base_score = run_one(base_params(base), base)

    if trials > 1 and time.perf_counter() < deadline:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                                 n_startup_trials=min(10, max(3, (trials - 1) // 3)))
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for prior in priors(base, space, scale):
            study.enqueue_trial(prior)

        def objective(trial) -> float:
            params = suggest(trial, space)
            config = apply_params(base, params, space)
            score = run_one(params, config)
            if score is None:
                raise optuna.TrialPruned()  # recorded as failed above; optuna skips it
            return score

        logging.getLogger("optuna").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(objective, n_trials=trials - 1,
                           timeout=max(deadline - time.perf_counter(), 0.001), gc_after_trial=False)

    note = None
    if best["score"] == -math.inf:
        errors = "; ".join(sorted({r.error for r in records if r.error}))
        raise MallrecError(f"every tune trial failed: {errors}")
    if base_score is not None and best["number"] != 0:
        # The best of many trials on a small validation set is partly luck: keep the starting config
        # unless the winner beats it by more than `min_gain_se` standard errors of the paired gain.
        gain = paired["best"] - paired["base"]
        se = float(gain.std(ddof=1) / math.sqrt(len(gain))) if len(gain) > 1 else math.inf
        if not gain.mean() > min_gain_se * se:
            note = (f"the best trial (#{best['number']}, {metric} {best['score']:.4f}) beats the starting "
                    f"config by {gain.mean():+.4f}, less than {min_gain_se:g} standard errors "
                    f"({se:.4f}) on {len(gain):,} validation members: keeping the starting config")
            _say(steps, note)
            best.update(score=base_score, config=base, number=0)
    result = TuneResult(best_config=best["config"], best_score=float(best["score"]), base_score=base_score,
                        metric=metric, trials=records, seconds=time.perf_counter() - started,
                        best_number=int(best["number"]), note=note,
                        validation={"split": "leave-last-out", "members_scored": int(len(val.members)),
                                    "held_out_pairs": int(len(val.split.test_members)),
                                    **scale.as_dict()})
    return result


def _say(steps: Steps, line: str) -> None:
    """One line, never wrapped (a trial per line reads as a table in a log)."""
    if not steps.quiet:
        steps.console.print(line, highlight=False, soft_wrap=True, markup=False)


def _trial_line(rec: TrialRecord, metric: str, best: float, is_best: bool) -> str:
    p = rec.params
    decay = "off" if p.get("half_life") is None else f"{p['decay_from']} {human_duration(p['half_life'])}"
    if p.get("member_half_life"):
        decay += f" member={human_duration(p['member_half_life'])}"
    attrs = f" attr={p['attribute_weight']:.3g}" if p.get("attribute_weight") else ""
    weights = " ".join(f"{k[7:]}={v:.3g}" for k, v in p.items() if k.startswith("weight_"))
    mark = " *" if is_best else ""
    return (f"trial {rec.number:>3}  {metric} {rec.score:.4f}  hr@10 {rec.metrics.get('hr@10', 0):.4f}  "
            f"f={p['factors']} reg={p['regularization']:.3g} alpha={p['alpha']:.3g} it={p['iterations']} "
            f"decay={decay}{attrs} log={'on' if p['log_scale'] else 'off'} {weights}  "
            f"({rec.seconds:.1f}s, best {best:.4f}){mark}")
