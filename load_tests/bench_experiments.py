"""Experiments on simulated members: an A/B test, A/A tests over many seeds, nightly retraining vs none.

Every run is a subprocess of ``mallrec simulate`` (the real server, in its process, with an injected
clock) followed by ``mallrec report --by arm`` on its event log, so what is measured is the whole
path: the rules file's experiment -> assignment -> served records -> attribution -> member-level
intervals, lifts, verdicts and the sample-ratio check.

1. ``ab``: ``control`` (the built-in check_in recipe) against ``popular`` (popular items only, no
   re-ranker) on check_in, 50/50, one simulation. Expected: control wins (popular's CTR lift below
   zero with its whole interval below zero, verdict ``loss``).
2. ``aa``: two identical arms ``a`` and ``b`` on check_in, one simulation per seed (each seed with its
   own salt, so the split is redrawn too), then the share of seeds whose CTR verdict is ``win`` or
   ``loss`` (a false positive) against the 5% the 95% intervals allow, and SRM warnings.
3. ``retrain``: no experiment; ``--retrain nightly`` against ``--retrain never``, same seed and size:
   CTR per simulated day, all slots and check_in alone.

These are simulated members with invented tastes and an invented click model: a test of the system,
never a claim about real members' CTR.

Usage:
    .venv/bin/python -m load_tests.bench_experiments                  # all three (~10-25 min on 2 cores)
    .venv/bin/python -m load_tests.bench_experiments --only aa --aa-seeds 1-5 --jobs 2
Results: load_tests/results/bench_experiments-<time>.json and .md; the runs (history, models, event
log, summary.json, report JSON) under load_tests/results/bench_experiments-<time>/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
EXPERIMENT_AB = "checkin_popular"
EXPERIMENT_AA = "checkin_aa"
ALPHA = 0.05  # the false-positive rate the report's 95% intervals allow per A/A test
PARTS = ("ab", "aa", "retrain")

AB_RULES = """\
# A/B: the built-in check_in recipe (control) against popular items only, without the re-ranker
[experiments.{name}]
slots = ["check_in"]
salt = "{salt}"
[[experiments.{name}.arms]]
name = "control"
weight = 50
[[experiments.{name}.arms]]
name = "popular"
weight = 50
slot = {{ sources = [{{ use = "popular" }}], rerank = false }}
"""

AA_RULES = """\
# A/A: two arms serving the same slot; any verdict but "no significant difference" is a false positive
[experiments.{name}]
slots = ["check_in"]
salt = "{salt}"
[[experiments.{name}.arms]]
name = "a"
weight = 50
[[experiments.{name}.arms]]
name = "b"
weight = 50
"""


def mallrec() -> list[str]:
    """The ``mallrec`` command of this interpreter's environment."""
    exe = Path(sys.executable).with_name("mallrec")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mallrec")
    return [found] if found else [sys.executable, "-m", "service.cli"]


@dataclass
class Sim:
    """One simulation and, when it has an experiment, its arm report."""
    part: str
    name: str
    members: int
    days: int
    retrain: str
    seed: int
    rules: Path | None = None
    experiment: str | None = None
    out: Path = Path()
    sim_s: float = 0.0
    report_s: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def command(self) -> list[str]:
        cmd = [*mallrec(), "simulate", "--members", str(self.members), "--days", str(self.days),
               "--retrain", self.retrain, "--seed", str(self.seed), "--out", str(self.out / "run")]
        if self.rules is not None:
            cmd += ["--rules", str(self.rules)]
        return cmd


_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


def execute(sim: Sim) -> Sim:
    """simulate, then (with an experiment) report --by arm; stdout/stderr kept beside the run."""
    sim.out.mkdir(parents=True, exist_ok=True)
    run = sim.out / "run"
    env = {**os.environ, "COLUMNS": "200"}
    say(f"[{sim.part}] {sim.name}: simulate --members {sim.members} --days {sim.days} "
        f"--retrain {sim.retrain} --seed {sim.seed}")
    t0 = time.perf_counter()
    with open(sim.out / "simulate.log", "w") as log:
        rc = subprocess.run(sim.command(), stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    sim.sim_s = time.perf_counter() - t0
    if rc != 0 or not (run / "summary.json").is_file():
        sim.error = f"simulate exited {rc}; see {sim.out / 'simulate.log'}"
        say(f"[{sim.part}] {sim.name}: FAILED ({sim.error})")
        return sim
    sim.summary = json.loads((run / "summary.json").read_text())
    if sim.experiment is not None:
        since = sim.summary["days"][0]["date"]
        cmd = [*mallrec(), "report", "--log", str(run / "log"), "--by", "arm", "--experiment",
               sim.experiment, "--rules", str(sim.rules), "--since", since,
               "--items", str(run / "history" / "items.csv"), "--json", str(sim.out / "report.json")]
        t0 = time.perf_counter()
        with open(sim.out / "report.log", "w") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        sim.report_s = time.perf_counter() - t0
        if rc != 0 or not (sim.out / "report.json").is_file():
            sim.error = f"report exited {rc}; see {sim.out / 'report.log'}"
            say(f"[{sim.part}] {sim.name}: report FAILED ({sim.error})")
            return sim
        sim.report = json.loads((sim.out / "report.json").read_text())
    complete = sim.summary.get("log", {}).get("complete")
    say(f"[{sim.part}] {sim.name}: done in {sim.sim_s:.0f}s simulate + {sim.report_s:.0f}s report"
        + ("" if complete else "; the event log does NOT match what the simulator saw"))
    return sim


# ---------------------------------------------------------------- formatting

def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f}%"


def signed(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f}%"


def ci(c: list[float] | None, sign: bool = False) -> str:
    if not c:
        return "–"
    f = (lambda v: f"{v * 100:+.1f}") if sign else (lambda v: f"{v * 100:.2f}")
    return f"[{f(c[0])}, {f(c[1])}]"


def md_table(head: list[str], rows: list[list[str]]) -> str:
    right = [i > 0 for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def lift_p(row: dict[str, Any]) -> float | None:
    """Two-sided p of the CTR lift, from its 95% interval (normal, as the report computes it)."""
    from scipy import stats

    lift, c = row.get("lift"), row.get("lift_ci")
    if lift is None or not c or c[1] <= c[0] or c[0] <= -1.0:  # -1: the interval was floored
        return None
    se = (c[1] - c[0]) / (2 * float(stats.norm.ppf(0.975)))
    return float(2 * stats.norm.sf(abs(lift) / se))


def srm_block(rep: dict[str, Any], experiment: str) -> dict[str, Any]:
    return rep.get("experiments", {}).get(experiment, {}).get("srm", {})


# ---------------------------------------------------------------- parts

def ab_result(sim: Sim) -> dict[str, Any]:
    if sim.error:
        return {"error": sim.error}
    rows = sim.report["rows"]
    srm = srm_block(sim.report, EXPERIMENT_AB)
    table = md_table(
        ["arm", "members", "impressions", "clicks", "CTR [95% CI]", "CTR lift [95% CI]", "verdict",
         "conversion lift [95% CI]", "conversion verdict"],
        [[r["arm"], f"{r['members']:,}", f"{r['impressions']:,}", f"{r['clicks']:,}",
          f"{pct(r['ctr'])} {ci(r['ctr_ci'])}",
          "control" if r["control"] else f"{signed(r['lift'])} {ci(r['lift_ci'], True)}",
          "–" if r["control"] else r["verdict"],
          "control" if r["control"]
          else f"{signed(r['conversion_lift'])} {ci(r['conversion_lift_ci'], True)}",
          "–" if r["control"] else r["conversion_verdict"]] for r in rows])
    popular = next((r for r in rows if r["arm"] == "popular"), None)
    expected = bool(popular and popular["verdict"] == "loss" and popular["lift_ci"]
                    and popular["lift_ci"][1] < 0)
    return {"rows": rows, "srm": srm, "control_wins": expected, "table": table,
            "srm_line": f"SRM: chi2 = {srm.get('chi2') or 0:.3f}, p = {srm.get('p') or float('nan'):.3g}, "
                        f"members {srm.get('observed')} (expected {srm.get('expected')}); "
                        f"warning: {srm.get('warning') or 'none'}",
            "seconds": {"simulate": round(sim.sim_s, 1), "report": round(sim.report_s, 1)}}


def aa_result(sims: list[Sim]) -> dict[str, Any]:
    from scipy import stats

    per_seed, rows = [], []
    for sim in sorted(sims, key=lambda s: s.seed):
        if sim.error:
            per_seed.append({"seed": sim.seed, "error": sim.error})
            rows.append([str(sim.seed), "–", "–", "–", "–", "–", f"ERROR: {sim.error}", "–", "–"])
            continue
        arms = {r["arm"]: r for r in sim.report["rows"]}
        a, b = arms.get("a"), arms.get("b")
        srm = srm_block(sim.report, EXPERIMENT_AA)
        p = lift_p(b) if b else None
        per_seed.append({"seed": sim.seed, "members": {k: r["members"] for k, r in arms.items()},
                         "ctr": {k: r["ctr"] for k, r in arms.items()},
                         "lift": b and b["lift"], "lift_ci": b and b["lift_ci"], "lift_p": p,
                         "verdict": b and b["verdict"], "conversion_verdict": b and b["conversion_verdict"],
                         "revenue_per_member_verdict": b and b["revenue_per_member_verdict"],
                         "srm_p": srm.get("p"), "srm_warning": srm.get("warning"),
                         "simulate_s": round(sim.sim_s, 1), "report_s": round(sim.report_s, 1)})
        rows.append([str(sim.seed), f"{a['members'] if a else 0:,} / {b['members'] if b else 0:,}",
                     pct(a and a["ctr"]), pct(b and b["ctr"]),
                     f"{signed(b and b['lift'])} {ci(b and b['lift_ci'], True)}",
                     "–" if p is None else f"{p:.3f}", (b and b["verdict"]) or "–",
                     "–" if srm.get("p") is None else f"{srm['p']:.3f}",
                     "yes" if srm.get("warning") else "no"])
    done = [s for s in per_seed if "error" not in s]
    n = len(done)
    sig = [s["seed"] for s in done if s["verdict"] in ("win", "loss")]
    not_enough = [s["seed"] for s in done if s["verdict"] == "not_enough_data"]
    srm_warn = [s["seed"] for s in done if s["srm_warning"]]
    conv_sig = [s["seed"] for s in done if s["conversion_verdict"] in ("win", "loss")]
    k = len(sig)
    binom = stats.binom(n, ALPHA) if n else None
    # the counts a test at 5% of "the false-positive rate is 5%" would not reject (two-sided, exact)
    consistent = [j for j in range(n + 1) if stats.binomtest(j, n, ALPHA).pvalue >= 0.05] if n else []
    # under A/A the lift's p-values should be uniform on [0, 1]
    ps = [s["lift_p"] for s in done if s["lift_p"] is not None]
    ks = float(stats.kstest(ps, "uniform").pvalue) if len(ps) >= 5 else None
    exactly = float(binom.pmf(k)) if binom is not None else float("nan")
    at_least = float(binom.sf(k - 1)) if binom is not None else float("nan")
    accepted = f"{min(consistent)}-{max(consistent)}" if consistent else "-"
    line = (f"CTR significant (win or loss): {k} of {n} (seeds {sig or 'none'}); expected at 5%: "
            f"{n * ALPHA:.1f}; P(exactly {k} | 5%) = {exactly:.3f}, P(at least {k} | 5%) = {at_least:.3f}; "
            f"counts an exact two-sided binomial test at 5% finds consistent with a 5% rate: {accepted}; "
            f"lift p-values vs uniform (KS): p = {'-' if ks is None else f'{ks:.3f}'}; not enough data: "
            f"{len(not_enough)}; conversion significant: {len(conv_sig)}; SRM warnings: {len(srm_warn)}; "
            f"errors: {len(per_seed) - n}")
    return {
        "seeds": per_seed, "runs": n, "errors": len(per_seed) - n,
        "ctr_significant": k, "ctr_significant_seeds": sig,
        "not_enough_data_seeds": not_enough, "conversion_significant_seeds": conv_sig,
        "srm_warnings": len(srm_warn), "srm_warning_seeds": srm_warn,
        "expected_false_positives": round(n * ALPHA, 2),
        "p_at_least_k_if_5pct": None if binom is None else round(float(binom.sf(k - 1)), 4),
        "p_zero_if_5pct": None if binom is None else round(float(binom.pmf(0)), 4),
        "counts_consistent_with_5pct": [min(consistent), max(consistent)] if consistent else None,
        "binomial_95ci_of_rate": (list(stats.binomtest(k, n).proportion_ci(0.95)) if n else None),
        "lift_p_uniform_ks_p": ks, "line": line,
        "table": md_table(["seed", "members a / b", "CTR a", "CTR b", "b vs a: CTR lift [95% CI]", "p",
                           "verdict", "SRM p", "SRM warning"], rows),
    }


def day_ctr(summary: dict[str, Any], slot: str | None) -> dict[int, tuple[int, int]]:
    """Impressions and clicks per day (all slots, or one)."""
    out: dict[int, tuple[int, int]] = {}
    if slot is None:
        for d in summary["days"]:
            out[d["day"]] = (d["impressions"], d["clicks"])
        return out
    for c in summary["cells"]:
        if c["slot"] == slot:
            imp, clk = out.get(c["day"], (0, 0))
            out[c["day"]] = (imp + c["impressions"], clk + c["clicks"])
    return out


def retrain_result(nightly: Sim, never: Sim) -> dict[str, Any]:
    if nightly.error or never.error:
        return {"error": nightly.error or never.error}
    rows, per_day = [], []
    n_all, v_all = day_ctr(nightly.summary, None), day_ctr(never.summary, None)
    n_ci, v_ci = day_ctr(nightly.summary, "check_in"), day_ctr(never.summary, "check_in")
    dates = {d["day"]: d for d in nightly.summary["days"]}

    def r(x: tuple[int, int]) -> float | None:
        return x[1] / x[0] if x[0] else None

    for day in sorted(n_all):
        info = dates[day]
        retrained = (nightly.summary["days"][day - 2]["retrain"] if day > 1 else None)
        a, b = r(n_all[day]), r(v_all.get(day, (0, 0)))
        c, d = r(n_ci.get(day, (0, 0))), r(v_ci.get(day, (0, 0)))
        per_day.append({"day": day, "date": info["date"], "all_slots": {"nightly": a, "never": b},
                        "check_in": {"nightly": c, "never": d},
                        "impressions": {"nightly": n_all[day][0], "never": v_all.get(day, (0, 0))[0]},
                        "model": ("day 0" if retrained is None else retrained["version"]),
                        "trained_on_events": None if retrained is None else retrained["events"],
                        "train_s": None if retrained is None else retrained["train_s"]})
        model = ("day-0 model" if retrained is None else
                 f"retrained night {day - 1} ({retrained['events']:,} events, {retrained['train_s']:.0f}s)")
        rows.append([str(day), info["date"], model,
                     f"{n_all[day][0]:,} / {v_all.get(day, (0, 0))[0]:,}",
                     pct(a), pct(b), signed(None if a is None or not b else a / b - 1),
                     pct(c), pct(d), signed(None if c is None or not d else c / d - 1)])
    tn, tv = nightly.summary["totals"], never.summary["totals"]
    rows.append(["all", "", "", f"{tn['impressions']:,} / {tv['impressions']:,}", pct(tn["ctr"]),
                 pct(tv["ctr"]), signed(tn["ctr"] / tv["ctr"] - 1 if tv["ctr"] else None), "", "", ""])
    return {"days": per_day, "totals": {"nightly": tn, "never": tv},
            "seconds": {"nightly": round(nightly.sim_s, 1), "never": round(never.sim_s, 1)},
            "wall_seconds_inside": {"nightly": nightly.summary["wall_seconds"],
                                    "never": never.summary["wall_seconds"]},
            "table": md_table(["day", "date", "nightly: model served", "items served nightly / never",
                               "CTR nightly", "CTR never", "nightly vs never",
                               "check_in CTR nightly", "check_in CTR never", "check_in nightly vs never"],
                              rows)}


# ---------------------------------------------------------------- main

def seeds(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m load_tests.bench_experiments",
        description="A/B, A/A-over-seeds and nightly-vs-never experiments on `mallrec simulate` runs, read "
                    "with `mallrec report --by arm`. Simulated members: a test of the system, not accuracy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS),
                   help=f"parts to run, comma-separated: {', '.join(PARTS)}")
    p.add_argument("--jobs", type=int, default=2, help="simulations at a time (each is one process)")
    p.add_argument("--tag", default="", help="added to the results' file names")
    p.add_argument("--work", type=Path, default=None,
                   help="folder for the runs (default: load_tests/results/bench_experiments-<time>/)")
    g = p.add_argument_group("A/B: control vs popular on check_in")
    g.add_argument("--ab-members", type=int, default=2000)
    g.add_argument("--ab-days", type=int, default=7)
    g.add_argument("--ab-retrain", choices=("never", "nightly"), default="never")
    g.add_argument("--ab-seed", type=int, default=7)
    g = p.add_argument_group("A/A: identical arms a and b on check_in, one run per seed")
    g.add_argument("--aa-members", type=int, default=1500)
    g.add_argument("--aa-days", type=int, default=4)
    g.add_argument("--aa-retrain", choices=("never", "nightly"), default="never")
    g.add_argument("--aa-seeds", default="1-20", help="e.g. 1-20 or 1,3,5-8")
    g = p.add_argument_group("retrain: nightly vs never, no experiment")
    g.add_argument("--retrain-members", type=int, default=2000)
    g.add_argument("--retrain-days", type=int, default=7)
    g.add_argument("--retrain-seed", type=int, default=7)
    args = p.parse_args(argv)
    args.parts = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.parts if s not in PARTS]
    if bad:
        p.error(f"--only: unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S") + (f"-{args.tag}" if args.tag else "")
    work = args.work or RESULTS / f"bench_experiments-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    sims: list[Sim] = []
    if "ab" in args.parts:
        rules = work / "ab.toml"
        rules.write_text(AB_RULES.format(name=EXPERIMENT_AB, salt="sim-ab"))
        sims.append(Sim("ab", "control-vs-popular", args.ab_members, args.ab_days, args.ab_retrain,
                        args.ab_seed, rules, EXPERIMENT_AB, work / "ab"))
    if "retrain" in args.parts:
        for mode in ("nightly", "never"):
            sims.append(Sim("retrain", mode, args.retrain_members, args.retrain_days, mode,
                            args.retrain_seed, None, None, work / f"retrain-{mode}"))
    if "aa" in args.parts:
        for seed in seeds(args.aa_seeds):
            rules = work / f"aa-seed{seed}.toml"
            rules.write_text(AA_RULES.format(name=EXPERIMENT_AA, salt=f"sim-aa-{seed}"))
            sims.append(Sim("aa", f"seed {seed}", args.aa_members, args.aa_days, args.aa_retrain, seed,
                            rules, EXPERIMENT_AA, work / f"aa-seed{seed:02d}"))
    say(f"{len(sims)} simulations, {args.jobs} at a time; runs in {work}")
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(execute, sims))
    total_s = time.perf_counter() - began

    result: dict[str, Any] = {
        "note": "simulated members (invented tastes and click model): a test of the system, not an accuracy "
                "claim",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python -m load_tests.bench_experiments",
                             *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "host": {"cpus": os.cpu_count(), "load_avg_at_end": list(os.getloadavg())},
        "jobs": args.jobs, "total_seconds": round(total_s, 1), "work": str(work),
    }
    md = [f"# bench_experiments {stamp}", "", f"`{result['command']}`; {len(sims)} simulations, "
          f"{args.jobs} at a time, {total_s / 60:.1f} min. {result['note']}.", ""]
    if "ab" in args.parts:
        ab = sims[0]
        res = ab_result(ab)
        result["ab"] = {"config": {"members": ab.members, "days": ab.days, "retrain": ab.retrain,
                                   "seed": ab.seed}, **res}
        md += [f"## A/B: control vs popular on check_in ({ab.members:,} members, {ab.days} days, "
               f"--retrain {ab.retrain}, seed {ab.seed})", ""]
        md += ([res["table"], "", res["srm_line"], "",
                f"control wins (popular: verdict loss, whole lift interval below 0): {res['control_wins']}; "
                f"simulate {ab.sim_s:.0f}s, report {ab.report_s:.0f}s", ""] if "error" not in res
               else [f"ERROR: {res['error']}", ""])
    if "aa" in args.parts:
        aa = [s for s in sims if s.part == "aa"]
        res = aa_result(aa)
        result["aa"] = {"config": {"members": args.aa_members, "days": args.aa_days,
                                   "retrain": args.aa_retrain, "seeds": args.aa_seeds}, **res}
        times = sorted(s.sim_s + s.report_s for s in aa if not s.error)
        md += [f"## A/A: identical arms a and b on check_in, seeds {args.aa_seeds} "
               f"({args.aa_members:,} members, {args.aa_days} days, --retrain {args.aa_retrain})", "",
               res["table"], "", res["line"], "",
               f"per seed (simulate + report): median {times[len(times) // 2]:.0f}s, max {times[-1]:.0f}s"
               if times else "", ""]
    if "retrain" in args.parts:
        nightly, never = (next(s for s in sims if s.part == "retrain" and s.name == m)
                          for m in ("nightly", "never"))
        res = retrain_result(nightly, never)
        result["retrain"] = {"config": {"members": args.retrain_members, "days": args.retrain_days,
                                        "seed": args.retrain_seed}, **res}
        md += [f"## --retrain nightly vs never ({args.retrain_members:,} members, {args.retrain_days} days, "
               f"seed {args.retrain_seed}, no experiment)", ""]
        md += ([res["table"], "", f"simulate: nightly {nightly.sim_s:.0f}s, never {never.sim_s:.0f}s", ""]
               if "error" not in res else [f"ERROR: {res['error']}", ""])
    result["runs"] = [{"part": s.part, "name": s.name, "seed": s.seed, "members": s.members,
                       "days": s.days, "retrain": s.retrain, "simulate_s": round(s.sim_s, 1),
                       "report_s": round(s.report_s, 1),
                       "log_complete": s.summary.get("log", {}).get("complete"),
                       "degraded": sum(d.get("degraded", 0) for d in s.summary.get("days", [])),
                       "server": s.summary.get("server"), "error": s.error} for s in sims]
    odd = [r for r in result["runs"] if r["error"] or r["log_complete"] is False or r["degraded"]]
    if odd:
        md += ["## Runs with something to look at", ""]
        md += [f"- {r['part']} {r['name']}: error {r['error']}, log complete {r['log_complete']}, "
               f"degraded responses {r['degraded']}, server counters {r['server']}" for r in odd]
        md.append("")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = RESULTS / f"bench_experiments-{stamp}.json"
    out_md = RESULTS / f"bench_experiments-{stamp}.md"
    out_json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    out_md.write_text("\n".join(md))
    print("\n".join(md))
    print(f"results: {out_json}, {out_md}")
    return 1 if any(s.error for s in sims) else 0


if __name__ == "__main__":
    sys.exit(main())
