"""CPU seconds that `mallrec train` spends besides its ALS fits, measured without the fits.

`bench_train.py`'s end-to-end ratio carries about +-0.05 of noise on the shared 2-core box (an A/A
run, the same commit twice in one run: 1.37x and 1.46x), most of it from the ALS sweeps themselves,
so a change of a few CPU seconds elsewhere in the trainer cannot be seen there. Here `ALS.fit` is
replaced by a lookup of factors fitted once beforehand (real factors: the re-ranker's pools and the
neighbour search cost what they cost on them), and `mallrec train` runs end to end otherwise, each
run in its own child process: reading, matrices, history, popularity, the re-ranker, neighbours,
FAISS, publish. With --base-root the two checkouts alternate, round after round.

Usage:
    python load_tests/bench_train_overhead.py --data DIR [--base-root /tmp/old-checkout] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_train import find, run

from service.model_bundle import read_manifest, resolve

FIT_ONCE = r"""
import sys, numpy as np
from training.als import ALS
from training.config import load_config
from training.dataset import confidence_matrix
from training.events import load_dataset
events, items, members, config, out = sys.argv[1:6]
cfg = load_config(config or None)
ds = load_dataset(events, items, members or None)
als = ALS(cfg.als).fit(ds, confidence_matrix(ds, cfg.weighting))
np.savez(out, users=als.fitted[0], items=als.fitted[1])
"""

# every ALS fit in `train` (the re-ranker's first stage, the final one) returns the stored factors
TRAIN_WITHOUT_FITS = r"""
import sys, numpy as np
import training.als as als
factors = np.load(sys.argv[1])
USERS, ITEMS = factors["users"], factors["items"]

def fit(self, ds, matrix, iterations=None, start=None):
    self.fitted = (USERS, ITEMS)
    self.member_factors, self.item_factors = USERS[:matrix.shape[0]], ITEMS
    self.attribute_factors = USERS[matrix.shape[0]:] if len(USERS) > matrix.shape[0] else None
    return self

als.ALS.fit = fit
from service.cli import main
sys.argv = ["mallrec", "train", *sys.argv[2:]]
main()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="directory with events/items[/members] files")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--base-root", type=Path, default=None, help="another checkout, timed in turn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mallrec-overhead-"))
    data = args.data.resolve()
    events, items, members = find(data, "events"), find(data, "items"), find(data, "members")
    config = str(args.config.resolve()) if args.config else ""
    factors = work / "factors.npz"
    print("fitting ALS once for the factors ...", flush=True)
    run([sys.executable, "-c", FIT_ONCE, str(events), str(items), str(members or ""), config, str(factors)])
    train_args = ["--events", str(events), "--items", str(items), "--out", str(work / "models")]
    train_args += ["--members", str(members)] if members else []
    train_args += ["--config", config] if config else []

    train_cmd = [sys.executable, "-c", TRAIN_WITHOUT_FITS, str(factors), *train_args]
    results: dict[str, list[dict]] = {"this": [], "base": []}
    for r in range(args.rounds):
        codes = ["this"] if not args.base_root else ["base", "this"] if r % 2 == 0 else ["this", "base"]
        for code in codes:
            root = args.base_root if code == "base" else None
            wall, rss, _, cpu = run(train_cmd, root)
            steps = read_manifest(resolve(work / "models")).get("timings_s", {})  # this run's bundle
            results[code].append({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                                  "peak_rss_mib": round(rss), "steps_s": steps})
            print(f"round {r + 1}: {code}: {cpu:.1f} CPU s, {wall:.1f} s", flush=True)
    summary = {code: _summary(rows) for code, rows in results.items() if rows}
    if args.base_root:
        summary["base"]["root"] = str(args.base_root)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def _summary(rows: list[dict]) -> dict:
    """Medians over the rounds: CPU and wall seconds, and each step's seconds (the manifest's
    ``timings_s``: wall time, about CPU time here, where little runs beside anything)."""
    names = dict.fromkeys(name for row in rows for name in row["steps_s"])
    return {"runs": rows, "median_cpu_s": round(statistics.median(x["cpu_s"] for x in rows), 2),
            "median_wall_s": round(statistics.median(x["wall_s"] for x in rows), 2),
            "median_step_s": {name: round(statistics.median(x["steps_s"].get(name, 0.0) for x in rows), 2)
                              for name in names}}


if __name__ == "__main__":
    main()
