"""Training-time benchmark: the whole `mallrec train` against a bare `implicit` fit of the same matrix.

Both run in the same invocation, each in its own child process (so peak memory is per process):

1. `mallrec train` end to end (read files, weight, ALS, popularity, neighbours, FAISS + recall
   check, history, publish), timed from outside: wall seconds and peak RSS.
2. The bare fit: the same matrix built the same way (not timed), then only
   `AlternatingLeastSquares.fit` timed, with the same hyperparameters and threads.

Usage:
    python load_tests/bench_train.py --events 10000000            # synthesises a mall first
    python load_tests/bench_train.py --data DIR [--config FILE]   # DIR has events/items/members
"""

from __future__ import annotations

import argparse
import json
import os
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
    t = time.perf_counter()
    model.fit(matrix, show_progress=False)
    fit = time.perf_counter() - t
print(json.dumps({"fit_s": fit, "nnz": int(matrix.nnz), "shape": list(matrix.shape)}))
"""


def run(cmd: list[str]) -> tuple[float, float, str]:
    """Run a child; return (wall seconds, peak RSS in MiB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"child failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024, out


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
    events, items, members = find(data, "events"), find(data, "items"), find(data, "members")
    config = str(args.config or "")

    train_cmd = [sys.executable, "-m", "service.cli", "train", "--events", str(events), "--items",
                 str(items), "--out", str(work / "models")]
    if members:
        train_cmd += ["--members", str(members)]
    if args.config:
        train_cmd += ["--config", config]
    train_wall, train_rss, _ = run(train_cmd)
    fit_wall, fit_rss, fit_out = run([sys.executable, "-c", FIT_ONLY, str(events), str(items),
                                      str(members or ""), config])
    fit = json.loads(fit_out.strip().splitlines()[-1])
    result = {
        "events_file": str(events),
        "matrix_nnz": fit["nnz"],
        "matrix_shape": fit["shape"],
        "train_total_s": round(train_wall, 2),
        "bare_fit_s": round(fit["fit_s"], 2),
        "ratio": round(train_wall / fit["fit_s"], 3),
        "train_peak_rss_mib": round(train_rss),
        "bare_fit_process_peak_rss_mib": round(fit_rss),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
