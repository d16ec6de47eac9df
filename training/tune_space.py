"""The search space of `mallrec tune`: derived from the data's size, event types and clock, never
from constants that fit one data set (see training/tune.py for the search itself).

- factors, regularization, alpha, iterations: wide log ranges (factors capped by the catalogue size);
- event weights: only for event types present in the data, as ratios of the most valuable present
  type (a single event type gets no weight search: alpha already scales it);
- time decay (when events have more than one time): off, from the member's own newest event, or
  from the newest event overall. Half-lives are drawn relative to the data's own clock: between
  half the median gap of a member's consecutive events and twice the median member history span
  (member decay), or a fraction of the data's span (global decay). The config records them in
  absolute seconds, as `train` reads them;
- log_scale on or off;
- member re-solve (with decay on): off, or a half-life 0.05-1x the decay's (`member_half_life`);
- catalogue attributes as pseudo-members (when items have categories, brands or tags): off, or a
  confidence of 0.01-10 (`als.attribute_weight`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.model_bundle import EVENT_TYPES
from training.config import TrainConfig
from training.dataset import Dataset

if TYPE_CHECKING:
    import optuna

#: Largest number of factors tried (and never more than half the catalogue): a trial's cost grows
#: with factors squared, and past a few hundred implicit-feedback ALS rarely gains.
MAX_FACTORS = 256


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
    decays: tuple[str, ...] = ("off", "member", "global")  # only "off" when the data has no clock
    log_weight: tuple[float, float] = (1.0, 100.0)  # reference weight when log_scale is on

    @property
    def reference(self) -> str:
        return self.event_types[-1]


def search_space(ds: Dataset, scale: TimeScale, clock: bool = True) -> SearchSpace:
    """The ranges for ``ds``; ``clock`` False (every event at one time): no decay to search."""
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
                       has_attributes=has_attributes,
                       decays=("off", "member", "global") if clock else ("off",))


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """One point of the space, as flat readable params (half-lives in seconds)."""
    p: dict[str, Any] = {}
    p["factors"] = trial.suggest_int("factors", *space.factors, log=True)
    p["regularization"] = trial.suggest_float("regularization", *space.regularization, log=True)
    p["alpha"] = trial.suggest_float("alpha", *space.alpha, log=True)
    p["iterations"] = trial.suggest_int("iterations", *space.iterations)
    decay = trial.suggest_categorical("decay", list(space.decays))
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
    if "member" not in space.decays:  # no clock: the same starts without decay
        off = {**common, "decay": "off", **plain}
        return [off, {**off, "attributes": True, "attribute_weight": 1.0}] if space.has_attributes else [off]
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
