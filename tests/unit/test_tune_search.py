"""The search loop of `tune`: ranges widen when the best value sits at an edge, budgets hold."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import optuna
import pytest

from training.tune_search import Range, search, widen


@dataclass(frozen=True)
class Space:
    ranges: Mapping[str, Range]

    def with_ranges(self, ranges: Mapping[str, Range]) -> Space:
        return replace(self, ranges=dict(ranges))


def test_a_range_widens_past_the_edge_its_best_sits_at():
    r = Range(1.0, 100.0, limits=(1e-3, 1e4))
    assert r.widened(95.0) == replace(r, high=1000.0)  # by sqrt(100) = 10
    assert r.widened(1.1) == replace(r, low=0.1)
    assert r.widened(10.0) is None  # inside: no reason to widen
    assert Range(1.0, 100.0).widened(99.0) is None  # no limits: fixed
    assert Range(1.0, 100.0, limits=(1.0, 100.0)).widened(99.0) is None  # already at its limit
    assert Range(1.0, 100.0, limits=(1.0, 300.0)).widened(99.0).high == 300.0  # stops at the limit
    f = Range(16, 256, integer=True, limits=(2, 1024), step=2.0)
    assert f.widened(250).high == 512 and f.widened(250).distribution().high == 512
    it = Range(5, 25, log=False, integer=True, limits=(1, 100))
    assert it.widened(25).high == 35 and it.widened(5).low == 1


def test_widen_names_each_widened_range():
    space = Space({"a": Range(1.0, 100.0, limits=(1e-3, 1e4)), "b": Range(1.0, 100.0, limits=(1e-3, 1e4))})
    wider, lines = widen(space, {"a": 100.0, "b": 10.0, "c": "x"})
    assert wider.ranges["a"].high == 1000.0 and wider.ranges["b"] == space.ranges["b"]
    assert lines == ["a 1-100 -> 1-1e+03 (best 100)"]
    assert widen(space, {"a": 10.0}) == (space, [])


def peak_at_3000(trial: optuna.Trial, space: Space) -> float:
    """A fake objective whose best x lies far above the starting range's top (100)."""
    x = space.ranges["x"].suggest(trial, "x")
    y = space.ranges["y"].suggest(trial, "y")
    return -abs(math.log(x / 3000)) - abs(math.log(y / 5))


def test_search_widens_and_goes_on_past_the_edge():
    calls: list[float] = []
    lines: list[str] = []

    def objective(trial: optuna.Trial, space: Space) -> float:
        score = peak_at_3000(trial, space)
        calls.append(trial.params["x"])
        return score

    space = Space({"x": Range(1.0, 100.0, limits=(1e-3, 1e5)), "y": Range(1.0, 100.0, limits=(1e-3, 1e5))})
    final = search(objective, space, trials=80, timeout=lambda: None, seed=0, settle=8, on_widen=lines.append)
    assert len(calls) == 80  # the cap counts every phase's trials
    assert final.ranges["x"].high > 1000  # widened more than once, in one line each time
    assert final.ranges["y"] == space.ranges["y"]  # its best (5) was inside all along
    assert lines and all(line.startswith("widening x ") for line in lines)
    assert max(calls) > 1000  # the search went on in the wider range
    # without limits the same search stays inside the starting range
    fixed = Space({"x": Range(1.0, 100.0), "y": Range(1.0, 100.0)})
    assert search(peak_at_3000, fixed, trials=30, timeout=lambda: None, settle=8) == fixed


def test_no_cap_runs_until_the_time_is_up():
    deadline = time.perf_counter() + 0.5
    n = 0

    def objective(trial: optuna.Trial, space: Space) -> float:
        nonlocal n
        n += 1
        return peak_at_3000(trial, space)

    space = Space({"x": Range(1.0, 100.0, limits=(1e-3, 1e5)), "y": Range(1.0, 100.0)})
    search(objective, space, trials=None, timeout=lambda: deadline - time.perf_counter(), settle=5)
    assert time.perf_counter() < deadline + 1.0
    assert n > 10


def test_failed_trials_count_and_the_search_goes_on():
    n = 0

    def flaky(trial: optuna.Trial, space: Space) -> float | None:
        nonlocal n
        n += 1
        score = peak_at_3000(trial, space)
        return None if n % 3 == 0 else score

    space = Space({"x": Range(1.0, 100.0, limits=(1e-3, 1e5)), "y": Range(1.0, 100.0)})
    search(flaky, space, trials=30, timeout=lambda: None, settle=5)
    assert n == 30


@pytest.mark.parametrize("value", [1.0, 100.0])
def test_a_widened_range_still_holds_its_old_values(value):
    r = Range(1.0, 100.0, limits=(1e-3, 1e5))
    wider = r.widened(value)
    assert wider is not None and wider.distribution()._contains(value)
