"""One command for the whole load test: echo server + mallrec server(s), every scenario, one report.

    .venv/bin/python -m load_tests.run --models MODELS_DIR [--scenarios ...] [--workers N]

It starts a bare gRPC echo server (load_tests/echo_server.py) and `mallrec serve` on free loopback
ports (real Redis from --redis-url, keys under their own prefix, deleted afterwards), drives both
with the same generator (load_tests/loadgen.py) in the same run, and writes
``OUT/run-<time>.json`` (everything) and ``OUT/run-<time>.md`` (the tables, every figure also as a
ratio to the echo server measured minutes apart). Every phase is bounded by a duration; the servers
are stopped at the end whatever happens.

Scenarios (default: all but soak):
  throughput  closed loop, max RPS: echo, each slot, the page, TrackEvents, a realistic mix; echo again
  latency     open loop at --rps (default 1000): echo, single-slot Recommend, the mix
  swap        open loop at --swap-rps while a new bundle is published (hard-linked copy of the live
              one with a new version): errors, p99 during the swap vs steady state
  soak        open loop mix at --soak-rps for --soak-minutes: RSS over time
  profile     py-spy on the server during closed-loop slot / page load -> OUT/profile-*.txt
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from load_tests import loadgen
from load_tests.loadgen import Population, RunSpec, Workload, parse_mix, per_second, public, window
from service import model_bundle as mb

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
REALISTIC_MIX = "recommend:slots=0.6,page=0.2,track=0.2"
ALL = ("throughput", "latency", "swap", "soak", "profile")
SWAP_GAP = 15.0  # seconds between two publishes of --swap-repeats (a swap takes 3-6 s at 1M members)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Servers:
    """N processes on one port (SO_REUSEPORT when N > 1), started and stopped together."""

    def __init__(self, name: str, cmd: list[str], port: int, workers: int, env: dict[str, str],
                 ready_text: str, logdir: Path, cwd: Path = ROOT) -> None:
        self.name, self.port = name, port
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.started_s = 0.0
        t0 = time.monotonic()
        for w in range(workers):
            log = logdir / f"{name}-{w}.log"
            self.logs.append(log)
            with open(log, "wb") as f:
                self.procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd,
                                                   env={**os.environ, **env}))
        deadline = time.monotonic() + 600
        for proc, log in zip(self.procs, self.logs, strict=True):
            while ready_text not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{name} exited at start:\n{log.read_text(errors='replace')[-3000:]}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{name} not ready after 600 s")
                time.sleep(0.1)
        self.started_s = time.monotonic() - t0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Swapper:
    """Publishes a 'new' bundle: the live one hard-linked under a new version (a real reload)."""

    def __init__(self, models: Path) -> None:
        self.models = models
        self.original = mb.current_version(models)
        self.created: list[Path] = []

    def publish(self) -> dict:
        t0 = time.monotonic()
        src = self.models / mb.VERSIONS_DIR / str(mb.current_version(self.models))
        version = mb.new_version()
        tmp = self.models / mb.VERSIONS_DIR / f".incoming-{version}"
        tmp.mkdir()
        for f in src.iterdir():
            if f.name != mb.MANIFEST:
                os.link(f, tmp / f.name)
        manifest = json.loads((src / mb.MANIFEST).read_text())
        manifest["version"] = version
        (tmp / mb.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        final = self.models / mb.VERSIONS_DIR / version
        os.rename(tmp, final)
        self.created.append(final)
        pointer = self.models / f".{mb.CURRENT_FILE}.loadtest"
        pointer.write_text(version + "\n")
        os.replace(pointer, self.models / mb.CURRENT_FILE)
        return {"version": version, "publish_s": round(time.monotonic() - t0, 3)}

    def restore(self) -> None:
        if self.original and mb.current_version(self.models) != self.original:
            pointer = self.models / f".{mb.CURRENT_FILE}.loadtest"
            pointer.write_text(self.original + "\n")
            os.replace(pointer, self.models / mb.CURRENT_FILE)
        for d in self.created:
            shutil.rmtree(d, ignore_errors=True)


def _one_swap(rep: dict, hook: dict) -> dict:
    """One publish of a run: when the new model first answered, and the window until 2 s after."""
    live_at = rep["model_versions"].get(hook["result"]["version"], {}).get("first_s")
    end = (live_at if live_at is not None else hook["at_s"] + 10) + 2.0
    return {"published_at_s": hook["at_s"], "first_answer_s": live_at,
            "took_s": round(live_at - hook["at_s"], 2) if live_at is not None else None,
            "during": window(rep, hook["at_s"], end)}


def git_state() -> str:
    """HEAD and the files changed on top of it (the tree is shared and edited while we measure)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--short", "--untracked-files=no", "service", "training"],
                               cwd=ROOT, capture_output=True, text=True).stdout.split("\n")
        changed = sorted(line[3:] for line in dirty if line.strip())
        return f"{head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")
    except OSError:
        return "unknown"


def delete_prefix(url: str, prefix: str) -> int:
    import redis

    r = redis.Redis.from_url(url)
    n = 0
    for keys in _chunks(r.scan_iter(match=prefix + "*", count=1000), 1000):
        n += r.delete(*keys)
    r.close()
    return n


def _chunks(it, n):  # type: ignore[no-untyped-def]
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


# --------------------------------------------------------------------------- the report


def row(name: str, rep: dict, echo_rps: float | None, target: str = "") -> dict:
    lat = rep["latency"]
    srv = rep.get("server", {})
    return {"scenario": name, "target": target, "mode": rep["mode"], "rps": rep["rps"],
            "ratio_to_echo": round(rep["rps"] / echo_rps, 3) if echo_rps else None,
            "p50_ms": lat.get("p50_ms"), "p95_ms": lat.get("p95_ms"), "p99_ms": lat.get("p99_ms"),
            "max_ms": lat.get("max_ms"), "requests": rep["requests"],
            "errors": sum(rep["errors"].values()) + rep["dropped_by_client"],
            "server_cpu_cores": srv.get("cpu_cores"), "server_cpu_ms_per_req": srv.get("cpu_ms_per_request"),
            "server_rss_mib": srv.get("rss_mib_max"), "client_cpu_cores": rep["client_cpu_cores"],
            "loadavg": rep["loadavg_1m"]}


def markdown(result: dict) -> str:
    lines = [f"# mallrec load test {result['started']}", "",
             f"machine: {result['machine']}", f"command: `{result['command']}`", "",
             f"code: {result['code']}", "",
             f"models: {result['models']} ({result['model_stats']})", "",
             f"mallrec start-up (load bundle, ready to serve): {result['mallrec_start_s']} s, "
             f"{result['mallrec_workers']} worker(s)", "",
             "| scenario | mode | RPS | × echo | p50 ms | p95 ms | p99 ms | max ms | requests | errors | "
             "server CPU cores | server CPU ms/req | server RSS MiB | client CPU cores | load avg |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append("| {scenario} | {mode} | {rps} | {ratio_to_echo} | {p50_ms} | {p95_ms} | {p99_ms} | "
                     "{max_ms} | {requests} | {errors} | {server_cpu_cores} | {server_cpu_ms_per_req} | "
                     "{server_rss_mib} | {client_cpu_cores} | {loadavg} |".format(**r))
    if result.get("derived"):
        lines += ["", "## derived", ""]
        lines += [f"- {k}: {v}" for k, v in result["derived"].items()]
    if result.get("swap"):
        s = result["swap"]
        lines += ["", "## model swap under load", "", "```", json.dumps(s["summary"], indent=2), "```", "",
                  "| t s | requests | errors | p50 ms | p99 ms |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {b['t_s']:.0f} | {b['n']} | {b['errors']} | {b['p50_ms']} | {b['p99_ms']} |"
                  for b in s["timeline"]]
    if result.get("swap_repeats"):
        r = result["swap_repeats"]
        lines += ["", f"## {len(r['swaps'])} swaps in one run (steady p99 {r['steady_p99_ms']} ms before "
                  f"the first; median ratio {r['ratio_median']})", "",
                  "| published at s | took s | p99 during ms | ratio |", "|---:|---:|---:|---:|"]
        lines += [f"| {w['published_at_s']} | {w['took_s']} | {w['during_p99_ms']} | {w['ratio']} |"
                  for w in r["swaps"]]
    if result.get("soak"):
        s = result["soak"]
        lines += ["", "## soak", "", "```", json.dumps(s["summary"], indent=2), "```"]
    if result.get("profiles"):
        lines += ["", "## profiles", ""] + [f"- {p}" for p in result["profiles"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- scenarios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, required=True, help="models dir (mallrec train --out)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--redis-prefix", default="mallrec-load:")
    ap.add_argument("--scenarios", default="throughput,latency,swap,profile",
                    help=f"comma separated, from {', '.join(ALL)}")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=32, help="closed loop in-flight per client process")
    ap.add_argument("--client-procs", type=int, default=1)
    ap.add_argument("--channels", type=int, default=0,
                    help="connections per client process (default 8 per server worker: SO_REUSEPORT "
                         "spreads connections, not requests, over the workers)")
    ap.add_argument("--rps", default="1000", help="latency scenario rates, comma separated")
    ap.add_argument("--rps-share", type=float, default=0.5,
                    help="also measure latency at this share of the single-slot capacity measured by "
                         "the throughput scenario in the same run (0: off)")
    ap.add_argument("--swap-rps", type=float, default=300.0)
    ap.add_argument("--swap-repeats", type=int, default=1,
                    help=f"publish this many bundles, {SWAP_GAP:g} s apart, in one swap run: one p99 ratio "
                         "each and their median (a single swap's p99 is noisy)")
    ap.add_argument("--soak-rps", type=float, default=200.0)
    ap.add_argument("--soak-minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=1, help="mallrec (and echo) processes on one port")
    ap.add_argument("--mix", default=REALISTIC_MIX, help="the realistic mix (loadgen --mix syntax)")
    ap.add_argument("--out", type=Path, default=ROOT / "load_tests" / "results")
    ap.add_argument("--tag", default="", help="suffix for the result file names")
    ap.add_argument("--server-root", type=Path, default=ROOT,
                    help="run `mallrec serve` from this checkout (before/after comparisons)")
    args = ap.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = set(scenarios) - set(ALL)
    if bad:
        sys.exit(f"unknown scenarios {sorted(bad)}; known: {', '.join(ALL)}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"run-{stamp}{'-' + args.tag if args.tag else ''}"
    logdir = args.out / "logs"
    logdir.mkdir(exist_ok=True)

    models = args.models.resolve()
    manifest = mb.read_manifest(mb.resolve(models))
    stats = manifest.get("data_stats", {})
    result: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{os.cpu_count()} cores (shared with other users), load average at start "
                   f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "command": " ".join([Path(PY).name, "-m", "load_tests.run", *sys.argv[1:]]),
        "models": str(models),
        "code": git_state() if args.server_root.resolve() == ROOT else f"server from {args.server_root}",
        "model_stats": {k: stats.get(k) for k in ("members", "items", "events")} | {
            "index": manifest.get("index", {}).get("kind")},
        "rows": [], "phases": {}, "derived": {},
    }
    print(f"{result['started']}  {result['machine']}", flush=True)
    pop = Population.from_models(models)
    mix = parse_mix(args.mix)
    swapper = Swapper(models)
    reuse = "1" if args.workers > 1 else "0"
    echo = mallrec = None
    try:
        echo_cmd = [PY, "-m", "load_tests.echo_server", "--port", str(port := free_port())]
        echo = Servers("echo", echo_cmd + (["--reuse-port"] if args.workers > 1 else []), port,
                       args.workers, {}, "echo serving", logdir)
        mport = free_port()
        mallrec = Servers("mallrec", [PY, "-m", "service.cli", "serve", "--models", str(models), "--port",
                                      str(mport), "--host", "127.0.0.1", "--redis-url", args.redis_url],
                          mport, args.workers,
                          {"MALLREC_REDIS_PREFIX": args.redis_prefix, "MALLREC_REUSE_PORT": reuse,
                           "MALLREC_LOG_LEVEL": "info"}, "mallrec serving", logdir,
                          cwd=args.server_root.resolve())
        result["mallrec_start_s"] = round(mallrec.started_s, 1)
        result["mallrec_workers"] = args.workers
        print(f"servers up: echo {echo.target}, mallrec {mallrec.target} "
              f"(started in {mallrec.started_s:.1f} s)", flush=True)

        def phase(label: str, servers: Servers, wl: Workload, *, rps: float | None = None,
                  duration: float | None = None, hooks=None, target_note: str = "") -> dict:  # type: ignore[no-untyped-def]
            spec = RunSpec(target=servers.target, duration=duration or args.duration, warmup=args.warmup,
                           concurrency=args.concurrency, rps=rps, procs=args.client_procs,
                           channels=args.channels or max(4, 8 * args.workers))
            how = f"{rps:g} RPS open loop" if rps else "closed loop"
            print(f"-- {label}: {how}, "
                  f"{spec.duration:g}+{spec.warmup:g} s ... (load avg {os.getloadavg()[0]:.2f})", flush=True)
            rep = loadgen.run(spec, pop, wl, server_pids=servers.pids, during=hooks)
            result["phases"][label] = public(rep)
            lat = rep["latency"]
            print(f"   {rep['rps']} RPS, p50 {lat.get('p50_ms')} p99 {lat.get('p99_ms')} "
                  f"max {lat.get('max_ms')} ms, errors {rep['errors']}, "
                  f"server CPU {rep.get('server', {}).get('cpu_cores')} cores, "
                  f"{rep.get('server', {}).get('cpu_ms_per_request')} ms/req", flush=True)
            return rep

        def wl(mix_: dict[str, float]) -> Workload:
            return Workload(mix_)

        echo_rps: float | None = None
        if "throughput" in scenarios:
            e1 = phase("echo (before)", echo, wl({"recommend:check_in": 1.0}))
            runs = {}
            for slot in loadgen.SLOTS:
                runs[slot] = phase(f"Recommend {slot}", mallrec, wl({f"recommend:{slot}": 1.0}))
            runs["page"] = phase("RecommendPage (3 slots)", mallrec, wl({"page": 1.0}))
            runs["track"] = phase("TrackEvents", mallrec, wl({"track": 1.0}))
            runs["mix"] = phase("realistic mix", mallrec, wl(mix))
            e2 = phase("echo (after)", echo, wl({"recommend:check_in": 1.0}))
            echo_rps = (e1["rps"] + e2["rps"]) / 2
            result["rows"].append(row("echo (before)", e1, echo_rps))
            result["rows"].append(row("echo (after)", e2, echo_rps))
            for slot in loadgen.SLOTS:
                result["rows"].append(row(f"Recommend {slot}", runs[slot], echo_rps, ">= 0.40 x echo"))
            result["rows"].append(row("RecommendPage (3 slots)", runs["page"], echo_rps, "<= 1.6 x one slot"))
            result["rows"].append(row("TrackEvents", runs["track"], echo_rps))
            result["rows"].append(row("realistic mix", runs["mix"], echo_rps))
            slot_rps = [runs[s]["rps"] for s in loadgen.SLOTS]
            slot_cpu = [runs[s]["server"]["cpu_ms_per_request"] for s in loadgen.SLOTS]
            page_cpu = runs["page"]["server"]["cpu_ms_per_request"]
            d = result["derived"]
            d["echo RPS (mean of before/after)"] = round(echo_rps, 1)
            d["Recommend one slot, RPS / echo (min over slots)"] = round(min(slot_rps) / echo_rps, 3)
            d["Recommend one slot, RPS / echo (mean over slots)"] = round(sum(slot_rps) / 3 / echo_rps, 3)
            d["RecommendPage cost / one slot (server CPU per request, vs mean slot)"] = round(
                page_cpu / (sum(slot_cpu) / 3), 3)
            d["RecommendPage cost / one slot (server CPU per request, vs dearest slot)"] = round(
                page_cpu / max(slot_cpu), 3)
            d["RecommendPage cost / one slot (1/RPS, vs mean slot)"] = round(
                (sum(slot_rps) / 3) / runs["page"]["rps"], 3)

        if "latency" in scenarios:
            rates = [float(x) for x in str(args.rps).split(",") if x.strip()]
            if args.rps_share and "throughput" in scenarios:
                slot_capacity = sum(r["rps"] for k, r in runs.items() if k in loadgen.SLOTS) / 3
                rates.append(round(args.rps_share * slot_capacity, -1) or 10.0)
            for rate in rates:
                e = phase(f"echo @ {rate:g} RPS", echo, wl({"recommend:check_in": 1.0}), rps=rate)
                r = phase(f"Recommend (one slot, 3 slots mixed) @ {rate:g} RPS", mallrec,
                          wl(parse_mix("recommend:slots=1")), rps=rate)
                m = phase(f"realistic mix @ {rate:g} RPS", mallrec, wl(mix), rps=rate)
                base = echo_rps or e["rps"]
                result["rows"].append(row(f"echo @ {rate:g} RPS", e, base))
                result["rows"].append(row(f"Recommend one slot @ {rate:g} RPS", r, base, "p99 <= 20 ms"))
                result["rows"].append(row(f"realistic mix @ {rate:g} RPS", m, base))
                result["derived"][f"Recommend one slot @ {rate:g} RPS: p99 ms (echo p99 ms)"] = (
                    f"{r['latency'].get('p99_ms')} ({e['latency'].get('p99_ms')}), "
                    f"errors {sum(r['errors'].values())} of {r['requests']}")

        if "swap" in scenarios:
            repeats = max(1, args.swap_repeats)
            dur = max(40.0, args.duration) + (repeats - 1) * SWAP_GAP
            at = max(40.0, args.duration) * 0.4 + args.warmup
            rep = phase(f"swap @ {args.swap_rps:g} RPS", mallrec, wl(mix), rps=args.swap_rps, duration=dur,
                        hooks=[(at + k * SWAP_GAP, swapper.publish) for k in range(repeats)])
            swaps = [_one_swap(rep, h) for h in rep["hooks"]]
            pub = rep["hooks"][0]
            live_at, during = swaps[0]["first_answer_s"], swaps[0]["during"]
            steady = window(rep, args.warmup, pub["at_s"])
            after = window(rep, (live_at or pub["at_s"]) + 2.0, 1e9)
            if repeats > 1:  # each swap's p99 against the one steady window before the first
                for sw in swaps:
                    sw["ratio"] = round(sw["during"]["p99_ms"] / steady["p99_ms"], 2) \
                        if steady.get("p99_ms") and sw["during"].get("p99_ms") else None
                ratios = sorted(r for sw in swaps if (r := sw["ratio"]) is not None)
                result["swap_repeats"] = {
                    "steady_p99_ms": steady.get("p99_ms"),
                    "swaps": [{"published_at_s": sw["published_at_s"], "took_s": sw["took_s"],
                               "during_p99_ms": sw["during"].get("p99_ms"), "ratio": sw["ratio"]}
                              for sw in swaps],
                    "ratio_median": round(statistics.median(ratios), 2) if ratios else None}
            summary = {"published_at_s": pub["at_s"], "new_version_first_answer_s": live_at,
                       "swap_took_s": swaps[0]["took_s"],
                       "failed_requests": sum(rep["errors"].values()), "errors": rep["errors"],
                       "steady": steady, "during_swap": during, "after": after,
                       "p99_during / p99_steady": round(during["p99_ms"] / steady["p99_ms"], 2)
                       if steady.get("p99_ms") and during.get("p99_ms") else None,
                       "rss_mib_before_after": [rep["server"]["rss_mib_start"], rep["server"]["rss_mib_end"]],
                       "rss_mib_peak": rep["server"]["rss_mib_max"]}
            result["swap"] = {"summary": summary, "timeline": per_second(rep)}
            result["rows"].append(row(f"swap @ {args.swap_rps:g} RPS (whole run)", rep, echo_rps,
                                      "no failure; p99 <= 2 x steady"))

        if "soak" in scenarios:
            dur = args.soak_minutes * 60
            rep = phase(f"soak {args.soak_minutes:g} min @ {args.soak_rps:g} RPS", mallrec, wl(mix),
                        rps=args.soak_rps, duration=dur)
            tl = rep["server_rss_timeline"]
            settle = [m for t, m in tl if t >= args.warmup + 60] or [tl[-1][1]]
            start_rss, end_rss = settle[0], tl[-1][1]
            summary = {"minutes": args.soak_minutes, "rps": rep["rps"],
                       "rss_mib_at_start_of_load": tl[0][1], "rss_mib_after_1_min": start_rss,
                       "rss_mib_end": end_rss, "rss_mib_max": max(m for _, m in tl),
                       "growth_after_first_minute": round((end_rss - start_rss) / start_rss, 4),
                       "errors": rep["errors"], "p99_ms": rep["latency"].get("p99_ms"),
                       "rss_timeline_mib": tl[:: max(1, len(tl) // 40)]}
            result["soak"] = {"summary": summary}
            result["rows"].append(row(f"soak {args.soak_minutes:g} min @ {args.soak_rps:g} RPS", rep,
                                      echo_rps, "RSS growth < 5%"))

        if "profile" in scenarios:
            from load_tests.profile_summary import record

            result["profiles"] = []
            for label, mix_ in (("slots", parse_mix("recommend:slots=1")), ("page", {"page": 1.0}),
                                ("mix", mix)):
                out = args.out / f"profile-{label}{'-' + args.tag if args.tag else ''}.txt"
                dur = args.duration
                proc = record(mallrec.pids[0], dur + args.warmup, out, title=f"mallrec server, closed-loop "
                              f"{label} load ({Workload(mix_).describe()})")
                phase(f"profiled: {label}", mallrec, wl(mix_), duration=dur)
                proc.finish()
                result["profiles"].append(str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out))
    finally:
        for s in (mallrec, echo):
            if s is not None:
                s.stop()
        swapper.restore()
        try:
            result["redis_keys_deleted"] = delete_prefix(args.redis_url, args.redis_prefix)
        except Exception as e:  # report, never mask the real error
            result["redis_cleanup_error"] = str(e)
        result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        if result["rows"] or result.get("swap") or result.get("soak"):
            (args.out / f"{name}.md").write_text(markdown(result))
        print(f"results: {args.out / name}.json / .md", flush=True)
    print(markdown(result))


if __name__ == "__main__":
    main()
