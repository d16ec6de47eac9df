"""Training-time benchmark: the whole `mallrec train` against a bare `implicit` fit of the same matrix.

All run in the same invocation, each in its own child process (so peak memory is per process):

1. `mallrec train` end to end (read files, weight, ALS, popularity, neighbours, FAISS + recall
   check, history, publish), timed from outside: wall seconds and peak RSS.
2. The bare fit, before and after (1): the same matrix built the same way (not timed), then only
   `AlternatingLeastSquares.fit` timed, with the same hyperparameters and threads. The ratio is
   train / mean of the two fits around it, in wall seconds and in CPU seconds; with ``--repeats N``
   the median over N rounds (fit, train, fit, train, ..., fit).

Usage:
    python load_tests/bench_train.py --events 10000000            # synthesises a mall first
    python load_tests/bench_train.py --data DIR [--config FILE]   # DIR has events/items/members
    python load_tests/bench_train.py --data DIR --base-root /tmp/old-checkout   # A/B in one run
    python load_tests/bench_train.py --data DIR --repeats 3      # median of 3 rounds

``--base-root``: also time that checkout's `mallrec train` (its code on PYTHONPATH), between the same
two bare fits: fit, train (base), train (this), fit; the next round swaps the order. The box drifts,
so an A/B is only fair in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIT_ONLY = r"""
import json, sys, time
from threadpoolctl import threadpool_limits
from training.als import make_implicit_model
from training.config import load_config
from training.dataset import confidence_matrix
from training.events import load_dataset
events, items, members, config = sys.argv[1:5]
cfg = load_config(config or None)
ds = load_dataset(events, items, members or None)
matrix = confidence_matrix(ds, cfg.weighting)
with threadpool_limits(1, "blas"):
    model = make_implicit_model(cfg.als)
    t, c = time.perf_counter(), time.process_time()
    model.fit(matrix, show_progress=False)
    fit, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"fit_s": fit, "fit_cpu_s": cpu, "nnz": int(matrix.nnz), "shape": list(matrix.shape)}))
"""


def run(cmd: list[str], root: Path | None = None) -> tuple[float, float, str, float]:
    """Run a child (``root``: another checkout's code first on PYTHONPATH); return (wall seconds,
    peak RSS in MiB, stdout, CPU seconds of all its threads)."""
    start = time.perf_counter()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    if root is not None:
        env["PYTHONPATH"] = str(root.resolve())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=root)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"child failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024, out, usage.ru_utime + usage.ru_stime


def find(data: Path, stem: str) -> Path | None:
    for suffix in (".parquet", ".csv"):
        if (data / f"{stem}{suffix}").exists():
            return data / f"{stem}{suffix}"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="directory with events/items[/members] files")
    ap.add_argument("--events", type=int, default=10_000_000, help="events to synthesise without --data")
    ap.add_argument("--members", type=int, default=0, help="members to synthesise (default events/20)")
    ap.add_argument("--items", type=int, default=0, help="items to synthesise (default events/200)")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    ap.add_argument("--base-root", type=Path, default=None,
                    help="another checkout whose trainer is timed too, between the same bare fits")
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds of train(s) then a bare fit; ratios are medians over the rounds")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mallrec-bench-"))
    data = args.data
    if data is None:
        data = work / "data"
        n_members = args.members or args.events // 20
        n_items = args.items or max(1000, args.events // 200)
        print(f"synthesising {args.events:,} events, {n_members:,} members, {n_items:,} items ...",
              flush=True)
        from training.synth import generate

        generate(data, members=n_members, items=n_items, events=args.events, fmt="parquet", seed=1)
    data = data.resolve()  # a --base-root child runs in its own checkout
    events, items, members = find(data, "events"), find(data, "items"), find(data, "members")
    config = str(args.config.resolve()) if args.config else ""

    def train_cmd(out: Path) -> list[str]:
        cmd = [sys.executable, "-m", "service.cli", "train", "--events", str(events), "--items",
               str(items), "--out", str(out)]
        cmd += ["--members", str(members)] if members else []
        return cmd + (["--config", config] if config else [])

    fit_cmd = [sys.executable, "-c", FIT_ONLY, str(events), str(items), str(members or ""), config]
    # bare fit, train(s), bare fit, ...: on a shared box the load drifts, so each train is compared
    # with the mean of the fits just before and after it; CPU seconds (all threads) drift less than
    # wall time. With --base-root each round times both trainers, in alternating order.
    _, fit_rss, out, _ = run(fit_cmd)
    fits = [json.loads(out.strip().splitlines()[-1])]
    trains: list[tuple[str, tuple[float, float, str, float], int]] = []  # (code, run, fits before it)
    for r in range(args.repeats):
        codes = ["this"] if not args.base_root else ["base", "this"] if r % 2 == 0 else ["this", "base"]
        for code in codes:
            root = args.base_root if code == "base" else None
            trains.append((code, run(train_cmd(work / f"models-{code}"), root), len(fits)))
            print(f"round {r + 1}: {code} trained in {trains[-1][1][0]:.1f} s", flush=True)
        _, _, out, _ = run(fit_cmd)
        fits.append(json.loads(out.strip().splitlines()[-1]))

    def summary(code: str) -> dict:
        rows = []
        for c, (wall, rss, _, cpu), i in trains:
            if c == code:
                around = fits[i - 1], fits[i]
                rows.append({"train_s": round(wall, 2), "ratio": round(wall / _mean(around, "fit_s"), 3),
                             "train_cpu_s": round(cpu, 2), "peak_rss_mib": round(rss),
                             "cpu_ratio": round(cpu / _mean(around, "fit_cpu_s"), 3)})
        med = {k: round(statistics.median(r[k] for r in rows), 3) for k in ("ratio", "cpu_ratio")}
        return {"runs": rows, "median_ratio": med["ratio"], "median_cpu_ratio": med["cpu_ratio"]}

    this = summary("this")
    result = {
        "events_file": str(events),
        "matrix_nnz": fits[0]["nnz"],
        "matrix_shape": fits[0]["shape"],
        "train_total_s": this["runs"][0]["train_s"],
        "bare_fit_s": [round(f["fit_s"], 2) for f in fits],
        "ratio": this["median_ratio"],
        "bare_fit_cpu_s": [round(f["fit_cpu_s"], 2) for f in fits],
        "cpu_ratio": this["median_cpu_ratio"],
        "runs": this["runs"],
        "train_peak_rss_mib": max(r["peak_rss_mib"] for r in this["runs"]),
        "bare_fit_process_peak_rss_mib": round(fit_rss),
        "cpus": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if args.base_root:
        result["base"] = {"root": str(args.base_root), **summary("base")}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def _mean(fits: tuple[dict, ...], key: str) -> float:
    return sum(f[key] for f in fits) / len(fits)


if __name__ == "__main__":
    main()
