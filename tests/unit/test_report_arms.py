"""`mallrec report --by arm`: member-level intervals checked by hand and by simulation, the decision
rule, the SRM check, and the report over hand-made and generated event logs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from service.eventlog import files
from service.eventlog.schema import LogRecord
from training.report import Attribution, ReportError, build_report
from training.report_arms import (
    LOSS,
    NO_DIFFERENCE,
    NOT_ENOUGH,
    WIN,
    Z,
    arm_report,
    interval,
    mean_estimate,
    pick_control,
    ratio_estimate,
    read_weights,
    relative_lift,
    srm,
    verdict,
)
from training.report_cli import print_arms, register
from training.report_html import render_arms

DAY = 86400
T0 = 20400 * DAY
NOW = T0 + 10 * DAY
SINCE = T0 - DAY


def write_log(root: Path, records: list[LogRecord]) -> Path:
    files.write_batch(root, records, "1-0", "1-1")  # the sink's writer: one file per day
    return root


def served(rid: str, member: str, item: str, ts: int, slot: str, exp: str, arm: str) -> LogRecord:
    return LogRecord(f"s-{rid}-{item}", member, item, "served", ts, slot=slot, request_id=rid, source="als",
                     experiment=exp, arm=arm)


def ev(eid: str, member: str, item: str, event: str, ts: int, rid: str = "", qty: int = 1) -> LogRecord:
    return LogRecord(eid, member, item, event, ts, quantity=qty, request_id=rid)


# ------------------------------------------------------------------ the statistics, by hand


def test_delta_method_ratio_by_hand():
    # three members: impressions x = (2, 4, 6), clicks y = (1, 0, 2); CTR r = 3 / 12 = 0.25
    # x̄ = 4, ȳ = 1; s_x² = (4 + 0 + 4) / 2 = 4; s_y² = (0 + 1 + 1) / 2 = 1; s_xy = (0 + 0 + 2) / 2 = 1
    # var = (s_y² - 2 r s_xy + r² s_x²) / (n x̄²) = (1 - 0.5 + 0.25) / (3 · 16) = 0.015625 = 0.125²
    r, var = ratio_estimate(np.array([1, 0, 2]), np.array([2, 4, 6]))
    assert float(r) == pytest.approx(0.25) and float(var) == pytest.approx(0.015625)
    lo, hi = interval(r, var)
    assert (float(lo), float(hi)) == pytest.approx((0.25 - 1.959964 * 0.125, 0.25 + 1.959964 * 0.125))
    assert pytest.approx(1.959963984540054) == Z


def test_relative_lift_and_mean_by_hand():
    # t = 0.3 (var 0.0336), c = 0.2 (var 0.01): lift 0.5, var 0.0336/0.04 + 0.09·0.01/0.0016 = 1.4025
    lift, var = relative_lift(0.3, 0.0336, 0.2, 0.01)
    assert lift == pytest.approx(0.5) and var == pytest.approx(1.4025)
    m, v = mean_estimate(np.array([0.0, 10.0, 20.0]))  # s² = 100, / n = 100/3
    assert float(m) == 10.0 and float(v) == pytest.approx(100 / 3)
    _, one = ratio_estimate(np.array([1]), np.array([2]))
    assert np.isnan(one) and np.isnan(mean_estimate(np.array([5.0]))[1])


def _arms(rng: np.random.Generator, sims: int, members: int, a: float, b: float, lift: float = 0.0):
    """Impressions and clicks of ``members`` members in each of ``sims`` simulated arms; each member has
    their own click propensity (beta(a, b) times 1 + lift), so clicks cluster by member."""
    n = 1 + rng.poisson(4, (sims, members))
    p = np.minimum(rng.beta(a, b, (sims, members)) * (1 + lift), 1.0)
    return rng.binomial(n, p), n


def _calls(ct, nt, cc, nc) -> tuple[np.ndarray, np.ndarray]:
    """Each simulation's lift interval: (significant, interval entirely above 0)."""
    lift, var = relative_lift(*ratio_estimate(ct, nt), *ratio_estimate(cc, nc))
    lo, hi = interval(lift, var)
    return (lo > 0) | (hi < 0), lo > 0


def test_aa_is_significant_about_five_percent_of_the_time():
    rng = np.random.default_rng(2026)
    sig, _ = _calls(*_arms(rng, 200, 1000, 2, 18), *_arms(rng, 200, 1000, 2, 18))
    assert 0.02 <= sig.mean() <= 0.09


def test_pooled_impressions_are_overconfident_when_members_cluster():
    """Why the unit is the member: with clicks concentrated on few members, a binomial interval over
    pooled impressions calls an A/A test significant far more often than 5%; the delta method does not."""
    rng = np.random.default_rng(7)
    (ct, nt), (cc, nc) = _arms(rng, 200, 1000, 0.3, 2.7), _arms(rng, 200, 1000, 0.3, 2.7)
    pt, pc = ct.sum(-1) / nt.sum(-1), cc.sum(-1) / nc.sum(-1)
    lift, var = relative_lift(pt, pt * (1 - pt) / nt.sum(-1), pc, pc * (1 - pc) / nc.sum(-1))
    lo, hi = interval(lift, var)
    assert ((lo > 0) | (hi < 0)).mean() > 0.12
    sig, _ = _calls(ct, nt, cc, nc)
    assert 0.02 <= sig.mean() <= 0.09


def test_ab_with_a_real_difference_is_a_win():
    rng = np.random.default_rng(11)
    sig, above = _calls(*_arms(rng, 200, 2000, 2, 18, lift=0.2), *_arms(rng, 200, 2000, 2, 18))
    assert above.mean() > 0.9 and (sig & ~above).mean() == 0  # never called a loss


def test_verdict_rule():
    assert verdict(0.10, (0.05, 0.15), 500, 500) == WIN
    assert verdict(-0.10, (-0.15, -0.05), 500, 500) == LOSS
    assert verdict(0.02, (-0.03, 0.07), 500, 500) == NO_DIFFERENCE
    assert verdict(0.10, (0.05, 0.15), 99, 500) == NOT_ENOUGH  # too few members in the arm
    assert verdict(0.10, (0.05, 0.15), 500, 99) == NOT_ENOUGH  # or in control
    assert verdict(0.60, (0.05, 1.16), 500, 500) == NOT_ENOUGH  # wider than ±50 points
    assert verdict(None, None, 500, 500) == NOT_ENOUGH


def test_srm():
    fires = srm({"control": 6000, "treat": 4000}, {"control": 50, "treat": 50})
    assert fires["p"] < 1e-3 and fires["chi2"] == pytest.approx(400.0)
    assert "sample ratio mismatch" in fires["warning"]
    assert fires["expected"] == {"control": 5000, "treat": 5000}
    fine = srm({"control": 5000, "treat": 5000}, {"control": 50, "treat": 50})
    assert fine["p"] == pytest.approx(1.0) and fine["warning"] is None
    assert srm({"control": 8000, "treat": 2000}, {"control": 80, "treat": 20})["warning"] is None
    stray = srm({"control": 50, "treat": 50, "old": 3}, {"control": 1, "treat": 1})
    assert "old" in stray["warning"] and stray["observed"]["old"] == 3
    missing = srm({"control": 100}, {"control": 1, "treat": 1})  # an arm with no members at all
    assert missing["p"] < 1e-3 and missing["observed"] == {"control": 100, "treat": 0}


def test_pick_control():
    assert pick_control(["b", "control", "a"])[0] == "control"
    name, why = pick_control(["rerank_v2", "rerank_v1"])
    assert name == "rerank_v1" and "first by name" in why


def test_read_weights(tmp_path):
    toml = tmp_path / "rules.toml"
    toml.write_text('[experiments.x]\nslots = ["check_in"]\nsalt = "s"\n'
                    '[[experiments.x.arms]]\nname = "control"\nweight = 50\n'
                    '[[experiments.x.arms]]\nname = "b"\nweight = 25\nslot = { rerank = false }\n')
    assert read_weights(toml, "x") == {"control": 50.0, "b": 25.0}
    assert read_weights(toml, "y") is None
    yml = tmp_path / "rules.yaml"
    yml.write_text("experiments:\n  x:\n    arms:\n"
                   "      - {name: control, weight: 1}\n      - {name: b, weight: 3}\n")
    assert read_weights(yml, "x") == {"control": 1.0, "b": 3.0}
    (tmp_path / "bad.toml").write_text("[experiments.x\n")
    with pytest.raises(ReportError, match="cannot read the rules file"):
        read_weights(tmp_path / "bad.toml", "x")
    (tmp_path / "noweight.toml").write_text('[[experiments.x.arms]]\nname = "control"\n')
    with pytest.raises(ReportError, match="no name or weight"):
        read_weights(tmp_path / "noweight.toml", "x")
    with pytest.raises(ReportError, match="cannot read"):
        read_weights(tmp_path / "missing.toml", "x")


# ------------------------------------------------------------------ a hand-made log

HAND = [
    # exp1 on check_in: control m1 (2 impressions, 1 click), m2 (1, 0)
    served("r1", "m1", "a", T0 + 10, "check_in", "exp1", "control"),
    served("r1", "m1", "b", T0 + 10, "check_in", "exp1", "control"),
    ev("c1", "m1", "a", "click", T0 + 20, rid="r1"),
    served("r2", "m2", "a", T0 + 30, "check_in", "exp1", "control"),
    # treat m3 (3 impressions; a click by window, a purchase of 2 c at 7 by request), m4 (1, 2 clicks)
    served("r3", "m3", "a", T0 + 40, "check_in", "exp1", "treat"),
    served("r3", "m3", "b", T0 + 40, "check_in", "exp1", "treat"),
    served("r3", "m3", "c", T0 + 40, "check_in", "exp1", "treat"),
    ev("c3", "m3", "b", "click", T0 + 50),
    ev("p3", "m3", "c", "purchase", T0 + 60, rid="r3", qty=2),
    served("r4", "m4", "a", T0 + 70, "check_in", "exp1", "treat"),
    ev("c4a", "m4", "a", "click", T0 + 80, rid="r4"),
    ev("c4b", "m4", "a", "click", T0 + 90, rid="r4"),
    # and m4's click on an exposure before the window is not counted (its impression is not either)
    served("r4old", "m4", "z", SINCE - 50, "check_in", "exp1", "treat"),
    ev("c4old", "m4", "z", "click", SINCE + 5, rid="r4old"),
    # m5 under both arms: left out, its click not counted
    served("r5", "m5", "a", T0 + 100, "check_in", "exp1", "control"),
    served("r6", "m5", "b", T0 + 110, "check_in", "exp1", "treat"),
    ev("c5", "m5", "a", "click", T0 + 120, rid="r5"),
    # m6 exposed before the window only: its click in the window is not counted
    served("r0", "m6", "a", SINCE - 100, "check_in", "exp1", "treat"),
    ev("c6", "m6", "a", "click", SINCE + 10),
    # exp2 on a frontend slot: impressions without experiment/arm take them from their served record
    served("r7", "m7", "d", T0 + 200, "cart_page", "exp2", "control"),
    LogRecord("i7", "m7", "d", "impression", T0 + 210, slot="cart_page", request_id="r7"),
    served("r8", "m8", "d", T0 + 300, "cart_page", "exp2", "b"),
    served("r8", "m8", "e", T0 + 300, "cart_page", "exp2", "b"),
    LogRecord("i8", "m8", "d", "impression", T0 + 310, slot="cart_page", request_id="r8"),
    ev("c8", "m8", "d", "click", T0 + 320, rid="r8"),
    # outside any experiment: not in the arm report
    served("r9", "m9", "a", T0 + 400, "home", "", ""),
    ev("c9", "m9", "a", "click", T0 + 410, rid="r9"),
]


@pytest.fixture(scope="module")
def hand(tmp_path_factory) -> Attribution:
    root = tmp_path_factory.mktemp("arms")
    (root / "items.csv").write_text("item_id,price\na,10\nb,4\nc,7\nd,3\n")
    return Attribution(write_log(root / "log", HAND), SINCE, items=root / "items.csv", now=NOW)


def by_arm(rep) -> dict[tuple[str, str], dict]:
    return {(r["experiment"], r["arm"]): r for r in rep.rows}


def test_hand_log_counts(hand):
    rep = arm_report(hand)
    got = by_arm(rep)
    assert list(got) == [("exp1", "control"), ("exp1", "treat"), ("exp2", "control"), ("exp2", "b")]
    keys = ("members", "impressions", "clicks", "purchases", "revenue")
    assert tuple(got["exp1", "control"][k] for k in keys) == (2, 3, 1, 0, 0.0)
    assert tuple(got["exp1", "treat"][k] for k in keys) == (2, 4, 3, 1, 14.0)
    assert tuple(got["exp2", "control"][k] for k in keys) == (1, 1, 0, 0, 0.0)  # the impression, not served
    assert tuple(got["exp2", "b"][k] for k in keys) == (1, 1, 1, 0, 0.0)
    e1 = rep.meta["experiments"]["exp1"]
    assert e1["members_in_several_arms"] == 1 and e1["events_not_counted"] == 3  # m4's old, m5's, m6's
    assert e1["control"] == "control" and e1["weights_from"] == "equal (no --rules given)"
    assert rep.meta["experiments"]["exp2"]["control"] == "control"


def test_hand_log_intervals_are_member_level(hand):
    got = by_arm(arm_report(hand))
    ctl, treat = got["exp1", "control"], got["exp1", "treat"]
    r, var = ratio_estimate(np.array([1, 0]), np.array([2, 1]))  # m1, m2
    assert ctl["ctr"] == pytest.approx(1 / 3)
    half = Z * np.sqrt(var)
    assert ctl["ctr_ci"] == pytest.approx([max(0.0, float(r - half)), float(r + half)])
    t, tvar = ratio_estimate(np.array([1, 2]), np.array([3, 1]))  # m3, m4
    lift, lvar = relative_lift(t, tvar, r, var)
    assert treat["lift"] == pytest.approx(float(lift)) == pytest.approx(3 / 4 / (1 / 3) - 1)
    assert treat["lift_ci"] == pytest.approx([max(-1.0, float(lift - Z * np.sqrt(lvar))),
                                              float(lift + Z * np.sqrt(lvar))])
    assert treat["revenue_per_member"] == 7.0 and treat["revenue_per_member_ci"][0] == 0.0  # floored
    assert treat["verdict"] == NOT_ENOUGH  # two members an arm
    assert treat["conversion_lift"] is None  # control has no purchase: no lift
    assert ctl["lift"] is None and ctl["verdict"] is None and ctl["control"] is True
    assert got["exp2", "b"]["ctr_ci"] is None  # one member: no interval


def test_experiment_filter_and_errors(hand, tmp_path):
    rep = arm_report(hand, "exp2")
    assert {r["experiment"] for r in rep.rows} == {"exp2"} and list(rep.meta["experiments"]) == ["exp2"]
    with pytest.raises(ReportError, match=r"no exposures of experiment 'nope'.*exp1, exp2"):
        arm_report(hand, "nope")
    log = hand.log_dir
    with pytest.raises(ReportError, match="go with --by arm"):
        build_report(log, by="slot", experiment="exp1", since="14d", now=NOW)
    with pytest.raises(ReportError, match="arm"):
        build_report(log, by="member", since="14d", now=NOW)


def test_no_experiment_in_the_window(tmp_path):
    log = write_log(tmp_path / "log", [served("r", "m", "a", T0, "home", "", "")])
    with pytest.raises(ReportError, match="no exposures of any experiment"):
        build_report(log, by="arm", since="14d", now=NOW)


# ------------------------------------------------------------------ a generated A/B log

def ab_records(members: int, ctr: tuple[float, float], seed: int = 3) -> list[LogRecord]:
    rng = np.random.default_rng(seed)
    out: list[LogRecord] = []
    for arm, p in zip(("control", "no_rerank"), ctr, strict=True):
        for m in range(members):
            member = f"{arm}-{m}"
            for k in range(int(rng.integers(1, 12))):
                rid, ts = f"{member}-{k}", T0 + m + k
                out.append(served(rid, member, f"i{k}", ts, "check_in", "checkin_rerank", arm))
                if rng.random() < p:
                    out.append(ev(f"c-{rid}", member, f"i{k}", "click", ts + 5, rid=rid))
                    if rng.random() < 0.3:
                        out.append(ev(f"p-{rid}", member, f"i{k}", "purchase", ts + 9, rid=rid))
    return out


@pytest.fixture(scope="module")
def ab(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("ab")
    (root / "items.csv").write_text("item_id,price\n" + "".join(f"i{k},{k + 3}\n" for k in range(12)))
    rules = root / "rules.toml"
    rules.write_text('[experiments.checkin_rerank]\nslots = ["check_in"]\nsalt = "2026-12"\n'
                     '[[experiments.checkin_rerank.arms]]\nname = "control"\nweight = 80\n'
                     '[[experiments.checkin_rerank.arms]]\nname = "no_rerank"\nweight = 20\n')
    return write_log(root / "log", ab_records(400, (0.10, 0.15))), root / "items.csv", rules


def test_ab_log_is_a_win(ab):
    log, items, _ = ab
    rep, _ = build_report(log, by="arm", since="14d", items=items, now=NOW)
    treat = by_arm(rep)["checkin_rerank", "no_rerank"]
    assert treat["members"] == 400 and treat["verdict"] == WIN and treat["lift_ci"][0] > 0
    assert rep.meta["experiments"]["checkin_rerank"]["srm"]["warning"] is None


def test_srm_from_the_rules_file(ab, tmp_path):
    log, items, rules = ab
    rep, _ = build_report(log, by="arm", since="14d", rules=rules, now=NOW)
    block = rep.meta["experiments"]["checkin_rerank"]
    assert block["weights"] == {"control": 0.8, "no_rerank": 0.2} and str(rules) in block["weights_from"]
    assert block["srm"]["p"] < 1e-3 and "sample ratio mismatch" in block["srm"]["warning"]
    other = tmp_path / "other.toml"
    other.write_text('about = "no experiments"\n')
    rep, _ = build_report(log, by="arm", since="14d", rules=other, now=NOW)
    block = rep.meta["experiments"]["checkin_rerank"]
    assert block["weights_from"].startswith("equal (no experiment") and block["srm"]["warning"] is None


def test_terminal_srm_line_is_red(ab):
    log, _, rules = ab
    rep, _ = build_report(log, by="arm", since="14d", rules=rules, now=NOW)
    console = Console(force_terminal=True, color_system="standard", width=240, record=True)
    print_arms(rep, console)
    styled = console.export_text(styles=True, clear=False).splitlines()
    red = next(x for x in styled if "SRM check" in x)
    assert "\x1b[1;31mSRM checkin_rerank: sample ratio mismatch" in red
    assert "no_rerank vs control (SRM: do not trust): CTR no_rerank wins" in console.export_text()


def test_cli_json_and_html(ab, tmp_path):
    log, items, rules = ab
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    out_json, out_html = tmp_path / "arms.json", tmp_path / "arms.html"
    args = ["report", "--log", str(log), "--items", str(items), "--since", "2025-11-07", "--by", "arm",
            "--experiment", "checkin_rerank", "--json", str(out_json), "--html", str(out_html)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "240"})
    assert result.exception is None, result.output
    assert "CTR no_rerank wins" in result.output and "SRM p = " in result.output
    data = json.loads(out_json.read_text())
    assert data["by"] == "arm" and data["decision"]["min_members"] == 100
    control, treat = data["rows"]
    assert set(treat) >= {"experiment", "arm", "members", "impressions", "clicks", "ctr", "ctr_ci", "lift",
                          "lift_ci", "conversion_lift", "conversion_lift_ci", "revenue_per_member_lift",
                          "revenue_per_member_lift_ci", "verdict"}
    assert control["arm"] == "control" and control["lift"] is None and treat["lift"] > 0
    srm_block = data["experiments"]["checkin_rerank"]["srm"]
    assert set(srm_block) >= {"p", "warning"} and srm_block["warning"] is None
    page = out_html.read_text()
    assert page.count("<svg") == 1 and "no_rerank wins" in page and "lift against control" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "<script" not in page
    rep, _ = build_report(log, by="arm", since="14d", rules=rules, now=NOW)
    assert 'class="srm"' in render_arms(rep)  # the SRM warning stands out on the page too
