"""`mallrec train --gate`: a new bundle goes live only if it ranks a recent holdout about as well as
the live one.

The holdout is the events' last ``days`` (each member's items new to them in that window, members
with earlier events) or an explicit member_id,item_id file. The window never starts before the live
bundle's newest event: scored on events it was trained on, the live bundle looks far better than it
is (on a re-run over the same log it "predicts" the holdout it memorised). The new bundle is trained
on the events before the cut (on all events with a file: its pairs are not in the events), and the
bundle that is measured is the bundle that is published: nothing is retrained after the gate, so
what passed is what serves, and it lacks the holdout window's events until the next run.

Both bundles are scored the same way, with `evaluate`'s code (``score_models``, the metrics in
`training/metrics.py`): each holdout member's ALS scores (member x item factors) on all items, the
member's training items excluded, HR@10 and NDCG@10. A member or item the bundle does not know is a
miss; a member whose factor vector is all zeros is ranked by the bundle's global popularity.

The rule: for HR@10 and NDCG@10 alike, ``new >= live x (1 - tolerance)``. No live bundle: passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service import model_bundle as mb
from service.errors import MallrecError
from training.config import TrainConfig
from training.dataset import Dataset, Split, has_clock, seen_matrix, temporal
from training.evaluate import score_models
from training.model_api import Model
from training.pipeline import build_bundle, iso_time, publish
from training.progress import Steps

#: `mallrec train --gate` exits with this when the gate keeps the new bundle back.
GATE_REFUSED_EXIT = 3
GATE_METRICS = ("hr@10", "ndcg@10")
K = 10


@dataclass
class GateResult:
    """What the gate measured and decided; ``as_manifest()`` goes into the published manifest."""

    passed: bool
    reason: str
    tolerance: float
    holdout: dict[str, Any]
    new: dict[str, float]
    live: dict[str, float] | None = None
    live_version: str | None = None
    notes: list[str] = field(default_factory=list)
    path: Path | None = None  # the published bundle, when it passed

    def as_manifest(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "tolerance": self.tolerance,
                "rule": f"new >= live x (1 - tolerance) for {' and '.join(GATE_METRICS)}",
                "holdout": self.holdout, "new": self.new, "live": self.live,
                "live_version": self.live_version, "notes": self.notes}


class BundleModel(Model):
    """A bundle's ALS scores in a dataset's id space (its own ids may differ: the live bundle was
    trained on other data). Unknown members score -inf everywhere, unknown items -inf: misses."""

    def __init__(self, bundle: mb.Bundle, ds: Dataset, name: str) -> None:
        self.name = name
        self.bundle = bundle
        self.member_pos = _positions(bundle.members.member_id, ds.members.member_id)
        self.item_pos = _positions(bundle.items.item_id, ds.items.item_id)
        self.has_item = self.item_pos >= 0
        self.n_items = ds.n_items

    def score(self, members: np.ndarray) -> np.ndarray:
        b = self.bundle
        rows = self.member_pos[np.asarray(members, dtype=np.int64)]
        out = np.full((len(rows), self.n_items), -np.inf, dtype=np.float32)
        known = np.flatnonzero(rows >= 0)
        if len(known) == 0:
            return out
        vectors = b.member_factors[rows[known]]
        scores = vectors @ b.item_factors.T
        cold = ~vectors.any(axis=1)  # no taste vector: what such a member is shown, the popular items
        scores[cold] = b.popularity_global
        out[np.ix_(known, np.flatnonzero(self.has_item))] = scores[:, self.item_pos[self.has_item]]
        return out


def _positions(bundle_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """For each of ``ids``, its row in ``bundle_ids`` (-1 when the bundle does not have it)."""
    index = {str(v): i for i, v in enumerate(bundle_ids.tolist())}
    return np.fromiter((index.get(str(v), -1) for v in ids.tolist()), dtype=np.int64, count=len(ids))


def gate_split(ds: Dataset, holdout_file: Path | None, days: float, notes: list[str],
               live_seen_to: int | None = None) -> tuple[Split, dict[str, Any]]:
    """The training events and the holdout the two bundles are measured on, and how it was made.

    ``live_seen_to``: the live bundle's newest event. The holdout starts after it even when the
    asked window starts earlier: scored on events it was trained on, the live bundle would look
    better than it is."""
    if holdout_file is not None:
        from training.events import read_pairs

        members, items = read_pairs(holdout_file, ds)
        split, dropped = _new_pairs(ds, members, items)
        if dropped:
            notes.append(f"{dropped:,} holdout pairs left out: the member has no events, or already has "
                         f"the item in the events (it cannot be recommended to them)")
        info: dict[str, Any] = {"kind": "file", "file": str(holdout_file)}
    else:
        if not has_clock(ds.events):
            raise MallrecError("--gate: the events carry no usable clock (every event has the same time), "
                               "so there is no 'last day' to hold out: give --holdout FILE")
        cut = int(ds.now - days * 86400)
        if live_seen_to is not None and live_seen_to > cut:
            if live_seen_to >= ds.now:
                raise MallrecError(f"--gate: the live bundle was trained on events up to "
                                   f"{_iso(live_seen_to)}, the newest in the input: there is no event "
                                   f"it has not seen to measure both bundles on. Give --holdout FILE, "
                                   f"or gate once new events have arrived")
            notes.append(f"the holdout starts at {_iso(live_seen_to)}, not {_iso(cut)}: the live bundle "
                         f"was trained on the events before it")
            cut = live_seen_to
        # events at or before the cut train, later ones are held out (half a second of slack so the
        # float window of `temporal` cannot move an event across the whole-second cut)
        split = temporal(ds, (ds.now - cut - 0.5) / 86400)
        info = {"kind": "last-days", "days": days, "cut": _iso(cut), "cut_ts": cut,
                "train_events": int(len(split.train.events))}
        if len(split.train.events) == 0:
            raise MallrecError(f"--gate: every event is in the last {days:g} day(s): nothing left to "
                               f"train on (a smaller --gate-days, or --holdout FILE)")
    if len(split.test_members) == 0:
        raise MallrecError("--gate: the holdout has no pair to score (no member with earlier events "
                           "has an item new to them in it): a larger --gate-days, or --holdout FILE")
    info.update(pairs=int(len(split.test_members)), members=int(len(np.unique(split.test_members))))
    return split, info


def _new_pairs(ds: Dataset, members: np.ndarray, items: np.ndarray) -> tuple[Split, int]:
    """All events train; the pairs of members with events, on items new to them, are the test."""
    has_events = np.bincount(ds.events.member, minlength=ds.n_members) > 0
    seen = seen_matrix(ds)
    keep = has_events[members] & (np.asarray(seen[members, items]).ravel() == 0)
    return Split(train=ds, test_members=members[keep], test_items=items[keep]), int((~keep).sum())


def measure(bundle: mb.Bundle, split: Split, name: str) -> dict[str, float]:
    """HR@10 and NDCG@10 of ``bundle`` on the holdout, as `evaluate` scores a model."""
    results = score_models({name: BundleModel(bundle, split.train, name)}, split, ks=(K,))[name]
    return {**{m: round(float(results[m]), 6) for m in GATE_METRICS}, "members": int(results["members"])}


def decide(new: dict[str, float], live: dict[str, float] | None, tolerance: float) -> tuple[bool, str]:
    """The gate's rule, with the reason in words and figures."""
    if live is None:
        return True, "no live bundle to compare with: the gate passes"
    worse = [m for m in GATE_METRICS if new[m] < live[m] * (1 - tolerance)]
    figures = ", ".join(f"{m} new {new[m]:.4f} vs live {live[m]:.4f}" for m in GATE_METRICS)
    if worse:
        return False, (f"{' and '.join(worse)} worse than the live bundle's by more than "
                       f"{tolerance:.1%} ({figures})")
    return True, f"not worse than the live bundle's by more than {tolerance:.1%} ({figures})"


def gated_train(ds: Dataset, config: TrainConfig, models_dir: str | Path, *, holdout_file: Path | None = None,
                days: float = 1.0, tolerance: float = 0.02, steps: Steps | None = None,
                keep: int = 5) -> GateResult:
    """Train on the events before the holdout, measure the new and the live bundle on it, publish
    the new one (with the figures in its manifest as ``gate``) only when it passes."""
    steps = steps or Steps(quiet=True)
    notes: list[str] = []
    live_version = mb.current_version(models_dir)
    live_bundle = None
    if live_version is not None:
        try:
            live_bundle = mb.load(models_dir, with_index=False)
        except mb.BundleError as e:
            raise MallrecError(f"--gate: the live bundle {live_version!r} cannot be read, so there is "
                               f"nothing to compare with ({e}). Roll back to a good one (`mallrec "
                               f"models rollback`), or train without --gate") from e
    seen_to = live_bundle.manifest.get("data_stats", {}).get("ts_max") if live_bundle else None
    split, info = gate_split(ds, holdout_file, days, notes, seen_to)
    bundle = build_bundle(split.train, config, steps)
    with steps.step("gate: score the new and the live bundle"):
        new = measure(bundle, split, "new")
        live = measure(live_bundle, split, "live") if live_bundle is not None else None
    passed, reason = decide(new, live, tolerance)
    result = GateResult(passed, reason, tolerance, info, new, live, live_version, notes)
    if passed:
        bundle.manifest["gate"] = result.as_manifest()
        result.path = publish(bundle, models_dir, steps, keep)
    return result


def _iso(ts: float) -> str:
    return iso_time(int(ts))
