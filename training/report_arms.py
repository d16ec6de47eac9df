"""`mallrec report --by arm`: which arm of an experiment wins.

Members are what an experiment randomises (a member's arm is a stable hash of the experiment's salt and
the member id), so every interval here treats the member as the unit: the member-level rows are
(impressions, clicks, purchases, revenue) and

- CTR and conversion are ratio estimators (sum of clicks / sum of impressions over the arm's members)
  with delta-method variances; a pooled-impression Wilson interval would treat a member's ten
  impressions as ten independent draws and come out too narrow;
- revenue per member is a plain mean over members;
- the relative lift of an arm over control, ``t / c - 1``, has the delta-method variance of a ratio
  of two independent estimates (the delta method GrowthBook, Statsig and Eppo use for relative lifts).

Exposures carry ``experiment`` and ``arm`` from the service's ``served`` records (a frontend
impression takes them from the served record of its request unless it sends its own); clicks, carts
and purchases take them from the exposure they are attributed to, and count only when that exposure
is in the window. A member exposed under two arms of one experiment (the salt changed mid-window, or
a bug) is left out of it and counted.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from scipy import stats

from training.report import Attribution, Report, ReportError

LEVEL = 0.95
Z = float(stats.norm.ppf(0.5 + LEVEL / 2))
CONTROL = "control"
MIN_MEMBERS = 100  # fewer exposed members than this in an arm or in control: not enough data yet
MAX_HALF_WIDTH = 0.5  # a lift interval wider than ±50 percentage points says nothing yet
SRM_P = 0.001  # below this, the split of members does not match the weights
METRICS = ("ctr", "conversion", "revenue_per_member")
LIFT_FIELD = {"ctr": "lift", "conversion": "conversion_lift",
              "revenue_per_member": "revenue_per_member_lift"}
VERDICT_FIELD = {"ctr": "verdict", "conversion": "conversion_verdict",
                 "revenue_per_member": "revenue_per_member_verdict"}
NOT_ENOUGH, NO_DIFFERENCE, WIN, LOSS = "not_enough_data", "no_significant_difference", "win", "loss"

# the interval maths runs on one arm's floats (the report) and on stacks of arms (simulations)
Values = TypeVar("Values", np.ndarray, float)


def ratio_estimate(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum(num) / sum(den)`` over the last axis (members) and its delta-method variance
    ``(s_y² - 2 r s_xy + r² s_x²) / (n x̄²)`` (sample moments, ddof 1). Works on stacks of arms, so
    one call checks a whole simulation."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = num.shape[-1]
    mx, my = den.mean(-1), num.mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = my / mx
        dx, dy = den - mx[..., None], num - my[..., None]
        sxx, syy, sxy = ((dx * dx).sum(-1), (dy * dy).sum(-1), (dx * dy).sum(-1))
        var = (syy - 2 * r * sxy + r * r * sxx) / (n - 1) / (n * mx * mx)  # NaN for one member
    return r, var


def mean_estimate(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean over the last axis (members) and its variance ``s² / n``."""
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    return x.mean(-1), (x.var(-1, ddof=1) / n if n > 1 else np.full(x.shape[:-1], np.nan))


def relative_lift(t: Values, var_t: Values, c: Values, var_c: Values) -> tuple[Values, Values]:
    """``t / c - 1`` and its delta-method variance ``var_t / c² + t² var_c / c⁴`` (independent arms)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return t / c - 1, var_t / c**2 + t**2 * var_c / c**4


def interval(est: Values, var: Values, z: float = Z) -> tuple[Values, Values]:
    """The normal interval ``est ± z·sqrt(var)``."""
    half = z * np.sqrt(var)
    return est - half, est + half


def verdict(lift: float | None, ci: Sequence[float] | None, members: int, control_members: int) -> str:
    """The decision rule: not enough data (an arm under ``MIN_MEMBERS`` members, no interval, or one
    wider than ±``MAX_HALF_WIDTH``), else no significant difference (the interval holds 0), else a win
    or a loss for the arm against control."""
    if (lift is None or ci is None or min(members, control_members) < MIN_MEMBERS
            or (ci[1] - ci[0]) / 2 > MAX_HALF_WIDTH):
        return NOT_ENOUGH
    if ci[0] <= 0 <= ci[1]:
        return NO_DIFFERENCE
    return WIN if ci[0] > 0 else LOSS


def say(v: str | None, arm: str, control: str) -> str:
    """A verdict in words."""
    return {NOT_ENOUGH: "not enough data yet", NO_DIFFERENCE: "no significant difference",
            WIN: f"{arm} wins", LOSS: f"{control} wins"}.get(v or "", "–")


def srm(observed: dict[str, int], weights: dict[str, float]) -> dict[str, Any]:
    """Sample-ratio mismatch: chi-square of members per arm against the weights' shares. Members in an
    arm the weights give no share are a mismatch whatever the p-value."""
    arms = [a for a, w in weights.items() if w > 0]
    total_w = sum(weights[a] for a in arms)
    n = sum(observed.get(a, 0) for a in arms)
    expected = {a: n * weights[a] / total_w for a in arms}
    p = chi2 = None
    if len(arms) > 1 and n > 0:
        res = stats.chisquare([observed.get(a, 0) for a in arms], [expected[a] for a in arms])
        chi2, p = float(res.statistic), float(res.pvalue)
    stray = sorted(a for a, k in observed.items() if k and weights.get(a, 0) <= 0)
    warning = None
    if stray:
        warning = f"members in arms the weights give no share: {', '.join(stray)}"
    elif p is not None and p < SRM_P:
        split = ", ".join(f"{a} {observed.get(a, 0):,} (expected {expected[a]:,.0f})" for a in arms)
        warning = (f"sample ratio mismatch (p = {p:.2g}): {split}; the arms are not comparable until "
                   f"the cause (assignment, logging, a filter that depends on the arm) is found")
    every = sorted(set(observed) | set(arms))
    return {"chi2": chi2, "p": p, "observed": {a: observed.get(a, 0) for a in every},
            "expected": {a: round(e, 1) for a, e in expected.items()}, "warning": warning}


def read_weights(rules: Path, experiment: str) -> dict[str, float] | None:
    """``[experiments.NAME.arms]``'s weights, read from the file itself (TOML, or YAML by suffix);
    None when the file has no such experiment."""
    try:
        text = Path(rules).read_text(encoding="utf-8")
        if Path(rules).suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ReportError(f"{rules}: cannot read the rules file ({e})") from e
    exp = (data.get("experiments") or {}).get(experiment) if isinstance(data, dict) else None
    if not isinstance(exp, dict):
        return None
    out: dict[str, float] = {}
    for arm in exp.get("arms") or []:
        try:
            out[str(arm["name"])] = float(arm["weight"])
        except (TypeError, KeyError, ValueError):
            raise ReportError(f"{rules}: an arm of experiment {experiment!r} has no name or weight: "
                              f"{arm!r}") from None
    return out or None


def pick_control(arms: list[str]) -> tuple[str, str]:
    """The arm every other is compared with: the one named ``control``, else the first by name."""
    if CONTROL in arms:
        return CONTROL, f"named {CONTROL!r}"
    return sorted(arms)[0], f"no arm is named {CONTROL!r}: the first by name"


_MEMBERS = """
WITH x AS (SELECT experiment, arm, member_id, count(*) AS impressions FROM counted
           WHERE experiment <> '' {where} GROUP BY ALL),
several AS (SELECT experiment, member_id FROM x GROUP BY ALL HAVING count(*) > 1),
e AS (SELECT a.experiment, a.arm, a.member_id,
             count(*) FILTER (a.event = 'click') AS clicks, count(*) FILTER (a.event = 'cart') AS carts,
             count(*) FILTER (a.event = 'purchase') AS purchases,
             coalesce(sum(p.price * a.quantity) FILTER (a.event = 'purchase'), 0) AS revenue
      FROM attributed a LEFT JOIN items p USING (item_id)
      WHERE a.experiment <> '' AND a.x_ts >= $since {where_a} GROUP BY ALL)
SELECT x.experiment, x.arm, s.member_id IS NOT NULL AS several, x.impressions,
       coalesce(e.clicks, 0) AS clicks, coalesce(e.carts, 0) AS carts,
       coalesce(e.purchases, 0) AS purchases, coalesce(e.revenue, 0) AS revenue
FROM x LEFT JOIN e USING (experiment, arm, member_id)
LEFT JOIN several s ON x.experiment = s.experiment AND x.member_id = s.member_id
ORDER BY x.experiment, x.arm
"""


def _members(att: Attribution, experiment: str | None) -> dict[str, np.ndarray]:
    """One row per (experiment, arm, exposed member), as numpy columns."""
    params: dict[str, Any] = {"since": int(att.since)}
    where = where_a = ""
    if experiment is not None:
        params["experiment"] = experiment
        where, where_a = "AND experiment = $experiment", "AND a.experiment = $experiment"
    return att.con.execute(_MEMBERS.format(where=where, where_a=where_a), params).fetchnumpy()


def _one(att: Attribution, sql: str, experiment: str) -> int:
    return int(att.row(sql, [experiment])[0])


def _ci(lo: Any, hi: Any, floor: float | None = None) -> list[float] | None:
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return [max(lo, floor) if floor is not None else lo, hi]


def _num(x: Any) -> float | None:
    return float(x) if np.isfinite(x) else None


def _estimates(m: dict[str, np.ndarray], revenue: bool) -> dict[str, tuple[float, float]]:
    out = {"ctr": ratio_estimate(m["clicks"], m["impressions"]),
           "conversion": ratio_estimate(m["purchases"], m["impressions"])}
    if revenue:
        out["revenue_per_member"] = mean_estimate(m["revenue"])
    return {k: (float(v), float(var)) for k, (v, var) in out.items()}


def _arm_row(experiment: str, arm: str, is_control: bool, m: dict[str, np.ndarray],
             est: dict[str, tuple[float, float]], revenue: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "experiment": experiment, "arm": arm, "control": is_control, "members": len(m["impressions"]),
        "impressions": int(m["impressions"].sum()), "clicks": int(m["clicks"].sum()),
        "carts": int(m["carts"].sum()), "purchases": int(m["purchases"].sum()),
        "revenue": round(float(m["revenue"].sum()), 2) if revenue else None,
    }
    for k in METRICS:
        v, var = est.get(k, (np.nan, np.nan))
        row[k] = _num(v)
        row[f"{k}_ci"] = _ci(*interval(v, var), floor=0.0)
    return row


def _compare(row: dict[str, Any], est: dict[str, tuple[float, float]], ctl: dict[str, tuple[float, float]],
             control_members: int) -> None:
    """The lift fields of a non-control arm's row."""
    for k in METRICS:
        name = LIFT_FIELD[k]
        lift = ci = None
        if k in est and ctl.get(k, (0.0, 0.0))[0] > 0:
            value, var = relative_lift(est[k][0], est[k][1], ctl[k][0], ctl[k][1])
            lift, ci = _num(value), _ci(*interval(value, var), floor=-1.0)
        row[name], row[f"{name}_ci"] = lift, ci
        row[VERDICT_FIELD[k]] = verdict(lift, ci, row["members"], control_members) if k in est else None


def arm_report(att: Attribution, experiment: str | None = None, rules: Path | None = None) -> Report:
    """One row per (experiment, arm) with member-level intervals, lifts against control, verdicts, and
    per experiment the control, the weights used and the SRM check (``meta["experiments"]``)."""
    cols = _members(att, experiment)
    revenue = att.items is not None
    if not len(cols["experiment"]):
        seen = [r[0] for r in att.con.execute(
            "SELECT DISTINCT experiment FROM counted WHERE experiment <> '' ORDER BY 1").fetchall()]
        what = f"experiment {experiment!r}" if experiment is not None else "any experiment"
        raise ReportError(f"no exposures of {what} in the window"
                          + (f" (experiments seen: {', '.join(seen)})" if seen else ""))
    rows: list[dict[str, Any]] = []
    blocks: dict[str, dict[str, Any]] = {}
    for exp in sorted(set(cols["experiment"].tolist())):
        in_exp = cols["experiment"] == exp
        several = _one(att, "SELECT count(*) FROM (SELECT member_id FROM counted WHERE experiment = ? "
                            "GROUP BY member_id HAVING count(DISTINCT arm) > 1)", exp)
        keep = in_exp & ~cols["several"]
        arms = sorted(set(cols["arm"][keep].tolist()))
        per_arm = {a: {k: v[keep & (cols["arm"] == a)] for k, v in cols.items()} for a in arms}
        block = _experiment_block(exp, per_arm, several, rules)
        blocks[exp] = block
        if not arms:
            continue
        control = block["control"]
        est = {a: _estimates(m, revenue) for a, m in per_arm.items()}
        for a in [control, *(a for a in arms if a != control)]:
            row = _arm_row(exp, a, a == control, per_arm[a], est[a], revenue)
            if a == control:
                for k in METRICS:
                    row[LIFT_FIELD[k]] = row[f"{LIFT_FIELD[k]}_ci"] = row[VERDICT_FIELD[k]] = None
            else:
                _compare(row, est[a], est[control], len(per_arm[control]["impressions"]))
            rows.append(row)
        counted = sum(r["clicks"] + r["carts"] + r["purchases"] for r in rows if r["experiment"] == exp)
        block["events_not_counted"] = _one(att, "SELECT count(*) FROM attributed WHERE experiment = ?",
                                           exp) - counted
    meta = {**att.meta(), "experiments": blocks,
            "decision": {"level": LEVEL, "min_members": MIN_MEMBERS, "max_lift_half_width": MAX_HALF_WIDTH,
                         "srm_p": SRM_P, "unit": "member"}}
    return Report("arm", rows, meta)


def _experiment_block(exp: str, per_arm: dict[str, dict[str, np.ndarray]], several: int,
                      rules: Path | None) -> dict[str, Any]:
    """The experiment's control, weights (and where they came from) and SRM check."""
    observed = {a: len(m["impressions"]) for a, m in per_arm.items()}
    weights = read_weights(rules, exp) if rules is not None else None
    if weights is not None:
        source = f"rules file {rules}"
    else:
        weights = dict.fromkeys(observed, 1.0)
        source = ("equal (no --rules given)" if rules is None
                  else f"equal (no experiment {exp!r} in {rules})")
    total = sum(weights.values()) or 1.0
    control, why = pick_control(list(observed)) if observed else (None, "no members")
    return {"arms": sorted(observed), "control": control, "control_rule": why,
            "weights": {a: w / total for a, w in weights.items()}, "weights_from": source,
            "srm": srm(observed, weights), "members_in_several_arms": several}
