"""The search loop of `mallrec tune`: optuna's TPE over numeric ranges that widen when the best value
sits at an edge.

optuna's distributions are fixed for a study, so a widening ends the current study (a "phase") and
starts a new one over the widened ranges, seeded with every finished trial (``study.add_trials``
with the trials re-declared over the new distributions: their values still lie inside). TPE then
keeps what it learnt and may sample past the old edge. A phase widens at most once, and only after
``settle`` finished trials of its own, so one lucky early trial does not stretch a range.

The loop knows nothing of ALS: a parameter is a named ``Range`` (or a categorical the objective
declares itself), so adding a model's parameters to the search is a new entry in the space and a
``suggest`` line in the objective.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

#: A best value in the outer 10% of a range's (log) width counts as at its edge.
EDGE = 0.1
#: Finished trials of a phase before its best may widen a range.
SETTLE = 10


@dataclass(frozen=True)
class Range:
    """A numeric search range; ``limits`` bound how far widening may take it (equal to the range:
    fixed)."""

    low: float
    high: float
    log: bool = True
    integer: bool = False
    limits: tuple[float, float] | None = None  # None: never widened
    step: float | None = None  # log ranges: widen by this factor (default: sqrt of the range's ratio, >= 2)

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import FloatDistribution, IntDistribution

        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def clip(self, value: float) -> float:
        return min(max(value, self.low), self.high)

    def _pos(self, value: float) -> float:
        """Where ``value`` lies in the range, 0 (low) to 1 (high), on the range's scale."""
        f = math.log if self.log else float
        width = f(self.high) - f(self.low)
        return (f(value) - f(self.low)) / width if width > 0 else 0.5

    def widened(self, value: float, edge: float = EDGE) -> Range | None:
        """The range stretched past the edge ``value`` sits at, or None (not at an edge, or the edge is
        already at its limit)."""
        if self.limits is None:
            return None
        lo_lim, hi_lim = self.limits
        pos = self._pos(value)
        if self.log:
            factor = self.step or max(2.0, math.sqrt(self.high / self.low))
            low, high = (self.low / factor, self.high) if pos <= edge else (self.low, self.high * factor)
        else:
            half = self.step or max(1.0, (self.high - self.low) / 2)
            low, high = (self.low - half, self.high) if pos <= edge else (self.low, self.high + half)
        if edge < pos < 1 - edge:
            return None
        low, high = max(low, lo_lim), min(high, hi_lim)
        if self.integer:
            low, high = math.ceil(low), math.floor(high)
        if (low, high) == (self.low, self.high):
            return None
        return replace(self, low=low, high=high)


class Space(Protocol):
    """What the loop needs of a search space: its numeric ranges by optuna parameter name."""

    @property
    def ranges(self) -> Mapping[str, Range]: ...

    def with_ranges(self, ranges: Mapping[str, Range]) -> Any: ...


#: One trial: suggest over the given space, return the score (None: the trial failed).
Objective = Callable[["optuna.Trial", Any], "float | None"]


def search(objective: Objective, space: Space, *, trials: int | None, timeout: Callable[[], float | None],
           seed: int = 0, priors: list[dict[str, Any]] | None = None, settle: int = SETTLE,
           edge: float = EDGE, on_widen: Callable[[str], None] | None = None) -> Space:
    """Run ``objective`` for at most ``trials`` trials (None: no cap) and until ``timeout()`` (seconds
    left, None: no limit) runs out; returns the space as widened by the end."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done: list[optuna.trial.FrozenTrial] = []
    # what the phase in progress works on (read by the two callbacks optuna calls)
    state: dict[str, Any] = {"space": space, "widened": None, "carried": 0, "ran": 0}

    def run(trial: optuna.Trial) -> float:
        state["ran"] += 1  # every phase, failed trials included
        score = objective(trial, state["space"])
        if score is None:
            raise optuna.TrialPruned()  # a failed trial: the objective has recorded why
        return score

    def check(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        mine = study.trials[state["carried"]:]
        if sum(t.state == optuna.trial.TrialState.COMPLETE for t in mine) < settle:
            return
        wider, lines = widen(state["space"], study.best_trial.params, edge)
        if lines:
            state["widened"] = wider
            if on_widen:
                on_widen("widening " + "; ".join(lines) + " (the best trial sits at the edge)")
            study.stop()

    for phase in range(1_000_000):
        left = None if trials is None else trials - state["ran"]
        seconds = timeout()
        if (left is not None and left <= 0) or (seconds is not None and seconds <= 0):
            break
        study = _study(seed + phase, trials, state["space"], done)
        state.update(carried=len(study.trials), widened=None)
        if phase == 0:
            for prior in priors or []:
                study.enqueue_trial(prior, skip_if_exists=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(run, n_trials=left, timeout=seconds, callbacks=[check], gc_after_trial=False)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if state["widened"] is None:
            break
        state["space"] = state["widened"]
    result: Space = state["space"]
    return result


def widen(space: Space, best: Mapping[str, Any], edge: float = EDGE) -> tuple[Any, list[str]]:
    """The space with every range whose ``best`` value sits at an edge widened, and one phrase per
    widened range (none: the space unchanged)."""
    ranges = dict(space.ranges)
    lines = []
    for name, r in space.ranges.items():
        if name not in best:
            continue
        wider = r.widened(float(best[name]), edge)
        if wider is not None:
            ranges[name] = wider
            lines.append(f"{name} {_num(r.low)}-{_num(r.high)} -> {_num(wider.low)}-{_num(wider.high)} "
                         f"(best {_num(float(best[name]))})")
    return (space.with_ranges(ranges) if lines else space), lines


def _num(x: float) -> str:
    return f"{x:.3g}"


def _study(seed: int, trials: int | None, space: Space,
           done: list[optuna.trial.FrozenTrial]) -> optuna.Study:
    """A study over ``space`` holding the finished trials of earlier phases, re-declared over its
    (possibly wider) distributions."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        startup = 10 if trials is None else min(10, max(3, (trials - 1) // 3))
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                             n_startup_trials=startup)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    ranges = space.ranges
    carried = []
    for t in done:
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue  # failed trials taught nothing worth carrying
        dists = {n: (ranges[n].distribution() if n in ranges else d) for n, d in t.distributions.items()}
        carried.append(optuna.trial.create_trial(params=t.params, distributions=dists, value=t.value,
                                                 user_attrs=t.user_attrs))
    study.add_trials(carried)
    return study
