"""The search space of `mallrec tune`: derived from the data's size, event types and clock, never
from constants that fit one data set (see training/tune.py for the search itself).

- factors, regularization, alpha, iterations: wide ranges (factors capped by the catalogue size),
  widened when the best value sits at an edge;
- event weights: only for event types present in the data, as ratios of the most valuable present
  type (a single event type gets no weight search: alpha already scales it);
- time decay (when events have a clock): off, from the member's own newest event, or (a clock of
  real time, not an order) from the newest event overall. Half-lives are drawn relative to the
  data's own clock: between half the median gap of a member's consecutive events and twice the
  median member history span (member decay), or a fraction of the data's span (global decay). The
  config records them in absolute seconds, as `train` reads them;
- log_scale on or off;
- member re-solve (with decay on): off, or a half-life 0.05-1x the decay's (`member_half_life`);
- catalogue attributes as pseudo-members (when items have categories, brands or tags): off, or a
  confidence of 0.01-10 (`als.attribute_weight`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from service.model_bundle import EVENT_TYPES
from training.config import TrainConfig
from training.dataset import Dataset
from training.tune_search import Range

if TYPE_CHECKING:
    import optuna

#: Top of the factors range at the start, and the most it widens to (never more than half the
#: catalogue): a trial's cost grows with factors squared.
START_FACTORS = 256
MAX_FACTORS = 1024


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
    """Ranges for one data set (derived from its size, event types and clock). ``ranges`` holds every
    numeric parameter by its optuna name; those with limits widen when the best sits at an edge
    (training/tune_search.py). A new parameter is a new entry here and a line in ``suggest``."""

    ranges: Mapping[str, Range]
    event_types: tuple[str, ...] = ()  # present in the data, least valuable first
    has_attributes: bool = False  # the catalogue has categories, brands or tags
    decays: tuple[str, ...] = ("off", "member", "global")  # only "off" when the data has no clock

    @property
    def reference(self) -> str:
        return self.event_types[-1]

    def with_ranges(self, ranges: Mapping[str, Range]) -> SearchSpace:
        return replace(self, ranges=dict(ranges))

    def num(self, trial: optuna.Trial, name: str) -> Any:
        return self.ranges[name].suggest(trial, name)


def search_space(ds: Dataset, scale: TimeScale, clock: str = "time") -> SearchSpace:
    """The ranges for ``ds``. ``clock`` is ``training.dataset.read_clock``'s kind: "none" searches no
    decay, "order" (ts counts positions) only member-relative decay, "time" both origins."""
    present = np.bincount(ds.events.event, minlength=len(EVENT_TYPES)) > 0
    types = tuple(e for e, p in zip(EVENT_TYPES, present, strict=True) if p) or ("purchase",)
    top = int(min(MAX_FACTORS, max(8, ds.n_items // 2)))
    hi = int(min(START_FACTORS, top))
    lo = int(min(16, hi))
    member_lo = 0.5 * scale.member_gap
    member_hi = max(2.0 * scale.member_span, 8.0 * member_lo)
    global_lo = scale.data_span / 100
    global_hi = 2.0 * scale.data_span
    it = ds.items
    has_attributes = bool(np.any(it.category != "") or np.any(it.brand != "") or np.any(it.tags != ""))
    ranges: dict[str, Range] = {
        # factors widen by doubling: a trial's cost grows with factors squared
        "factors": Range(lo, hi, integer=True, limits=(2, top), step=2.0),
        "regularization": Range(1e-2, 100.0, limits=(1e-5, 1e4)),
        "alpha": Range(0.3, 300.0, limits=(1e-3, 1e4)),
        "iterations": Range(5, 25, log=False, integer=True, limits=(1, 100)),
        "member_half_life": Range(member_lo, member_hi, limits=(1.0, 100 * member_hi)),
        "global_half_life": Range(global_lo, global_hi, limits=(1.0, 100 * global_hi)),
        "member_ratio": Range(0.05, 1.0),  # member re-solve half-life / the decay half-life
        "attribute_weight": Range(0.01, 10.0, limits=(1e-4, 1e3)),  # attribute pseudo-members
        "log_weight": Range(1.0, 100.0, limits=(1e-2, 1e4)),  # reference weight when log_scale is on
    }
    for e in types[:-1]:  # other types' weight / the reference type's
        ranges[f"ratio_{e}"] = Range(0.01, 2.0, limits=(1e-4, 100.0))
    decays = {"none": ("off",), "order": ("off", "member")}.get(clock, ("off", "member", "global"))
    return SearchSpace(ranges=ranges, event_types=types, has_attributes=has_attributes, decays=decays)


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """One point of the space, as flat readable params (half-lives in seconds)."""
    p: dict[str, Any] = {}
    for name in ("factors", "regularization", "alpha", "iterations"):
        p[name] = space.num(trial, name)
    decay = trial.suggest_categorical("decay", list(space.decays))
    p["decay_from"] = decay
    if decay == "member":
        p["half_life"] = space.num(trial, "member_half_life")
    elif decay == "global":
        p["half_life"] = space.num(trial, "global_half_life")
    else:
        p["half_life"] = None
    p["member_half_life"] = None
    if p["half_life"] is not None and trial.suggest_categorical("member_resolve", [False, True]):
        p["member_half_life"] = p["half_life"] * space.num(trial, "member_ratio")
    p["attribute_weight"] = 0.0
    if space.has_attributes and trial.suggest_categorical("attributes", [False, True]):
        p["attribute_weight"] = space.num(trial, "attribute_weight")
    p["log_scale"] = trial.suggest_categorical("log_scale", [False, True])
    ref = space.reference
    p[f"weight_{ref}"] = space.num(trial, "log_weight") if p["log_scale"] else 1.0
    for e in space.event_types[:-1]:
        p[f"weight_{e}"] = space.num(trial, f"ratio_{e}") * p[f"weight_{ref}"]
    return p


def priors(base: TrainConfig, space: SearchSpace, scale: TimeScale) -> list[dict[str, Any]]:
    """Generic first points for the search (relative to the data, fitted to no data set): a
    mid-sized ALS with a common confidence scale, once without decay, once with a member-relative
    half-life of two typical gaps ("the next item is most like the latest ones"), and once more with
    member vectors re-solved at a quarter of that half-life and catalogue attributes weighted like one
    event. Event-type ratios start from the starting config's."""
    r = space.ranges
    ref = getattr(base.weighting.events, space.reference) or 1.0
    common: dict[str, Any] = {
        "factors": int(r["factors"].clip(128)), "regularization": 1.0, "alpha": 10.0,
        "iterations": 15, "log_scale": False}
    for e in space.event_types[:-1]:
        common[f"ratio_{e}"] = float(r[f"ratio_{e}"].clip(getattr(base.weighting.events, e) / ref))
    half_life = float(r["member_half_life"].clip(2 * scale.member_gap))
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
