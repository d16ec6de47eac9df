"""Item-to-item models (EASE, RP3beta, item kNN) against ALS on real data: accuracy, fit time, memory.

Each data set is split as its clock allows, every model fits on the training part (the default
config's confidence matrix, as `evaluate` builds it) and ranks all items for each held-out member,
their training items excluded. Metrics: HR@10, NDCG@10, Recall@20, NDCG@20 (training.metrics).

    amazon-beauty       its holdout.csv (each member's last item), all events train
    amazon-beauty-ts0   ts = 0 copy: a seeded random 20% of each member's items held out
    taobao-2h           leave-last-out (real unix time)
    taobao-2h-ts0       ts = 0 copy: a seeded random 20% of each member's items held out

Each item model runs a small parameter grid; every row is printed (robustness shows across the
grid), then the best row by NDCG@10 is blended with ALS (standardised scores, weight w on the item
model). Parameters are picked on the test split itself, so the best rows are optimistic, equally so
for each item model (ALS stays at its default config). Peak memory is Python-side (tracemalloc:
NumPy/SciPy buffers; implicit's own allocations are not seen, so ALS shows its factors' size).

Usage:
    OPENBLAS_NUM_THREADS=1 python load_tests/bench_item_models.py --data amazon-beauty
    python load_tests/bench_item_models.py --data all --json /tmp/item_models.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Self

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from training.config import TrainConfig  # noqa: E402
from training.dataset import (  # noqa: E402
    Split,
    confidence_matrix,
    fit_clock,
    holdout_split,
    leave_last_out,
    leave_random_share,
    seen_matrix,
)
from training.evaluate import fit_models  # noqa: E402
from training.events import load_dataset, read_pairs  # noqa: E402
from training.metrics import ranking_metrics  # noqa: E402
from training.model_api import Blend, Model  # noqa: E402
from training.rp3beta import RP3beta, top_k_rows  # noqa: E402

SHARED = Path("/work/shared/datasets")
LOCAL = Path("/work/data")
DATA = ("amazon-beauty", "amazon-beauty-ts0", "taobao-2h", "taobao-2h-ts0")
COLUMNS = ("hr@10", "ndcg@10", "recall@20", "ndcg@20")
EASE_BUDGET = 2 * 1024**3  # bytes for EASE's dense matrices

GRIDS: dict[str, list[dict[str, float]]] = {
    "ease": [{"lam": lam} for lam in (200.0, 500.0)],
    "rp3beta": [{"k": 100, "alpha": a, "beta": b} for a in (0.3, 0.5, 0.8) for b in (0.0, 0.2, 0.4)],
    "itemknn": [{"k": k, "shrink": s} for k in (50, 200) for s in (10.0, 100.0, 300.0)],
}
BLEND_WEIGHTS = (0.3, 0.5, 0.7)
# --quick: the grid points that led on the amazon-beauty runs, for the large catalogues' slow ranking
QUICK: dict[str, list[dict[str, float]]] = {
    "ease": GRIDS["ease"],
    "rp3beta": [{"k": 100, "alpha": a, "beta": b} for a, b in ((0.3, 0.2), (0.5, 0.0), (0.5, 0.2))],
    "itemknn": [{"k": 200, "shrink": s} for s in (100.0, 300.0)],
}
QUICK_BLEND_WEIGHTS = (0.5, 0.7)


class ItemKNN(Model):
    """Cosine between item columns shrunk towards 0 for items with little support,
    s_ij = x_i . x_j / (|x_i| |x_j| + shrink), top k per item; scores = member row @ S."""

    name = "itemknn"
    batch_size = 1024

    def __init__(self, k: int = 100, shrink: float = 10.0):
        self.k, self.shrink = k, shrink

    def fit(self, ds: Any, matrix: sp.csr_matrix) -> Self:
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)
        xt = sp.csr_matrix(self.matrix.T)
        norms = np.sqrt(np.asarray(self.matrix.multiply(self.matrix).sum(axis=0)).ravel())
        blocks = []
        for start in range(0, xt.shape[0], 2048):
            raw = sp.csr_matrix(xt[start:start + 2048] @ self.matrix)
            rows = np.repeat(np.arange(raw.shape[0]) + start, np.diff(raw.indptr))
            raw.data /= norms[rows] * norms[raw.indices] + self.shrink + 1e-9
            raw.data[raw.indices == rows] = 0
            raw.eliminate_zeros()
            blocks.append(top_k_rows(raw, self.k))
        self.weights = sp.vstack(blocks, format="csr")
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        return np.asarray((self.matrix[members] @ self.weights).toarray(), dtype=np.float32)


def ease_max_items(budget_bytes: float) -> int:
    """EASE's fit holds about three float32 items x items matrices (Gram, inverse, LAPACK's work)."""
    return int(np.sqrt(budget_bytes / (3 * 4)))


class EASE(Model):
    """Steck's EASE: B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1; dense items x items."""

    name = "ease"
    batch_size = 1024

    def __init__(self, lam: float = 500.0):
        self.lam = lam

    def fit(self, ds: Any, matrix: sp.csr_matrix) -> Self:
        from scipy.linalg import lapack

        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)
        gram = np.asarray((self.matrix.T @ self.matrix).toarray(), dtype=np.float32)
        gram[np.diag_indices_from(gram)] += self.lam
        chol, info = lapack.spotrf(gram, lower=0, overwrite_a=1, clean=0)  # in place: one n x n buffer
        p, info2 = lapack.spotri(chol, lower=0, overwrite_c=1)
        if info or info2:
            raise ValueError(f"EASE: the Gram matrix could not be inverted (lapack {info}, {info2})")
        for start in range(0, len(p), 1024):  # mirror the upper triangle, a block at a time
            stop = min(start + 1024, len(p))
            p[start:stop, :start] = p[:start, start:stop].T
            tile = p[start:stop, start:stop]
            lower = np.tril_indices(stop - start, -1)
            tile[lower] = tile.T[lower]
        p = p.T  # column-major from LAPACK; symmetric, so the transpose is P row-major
        p /= -np.diag(p).copy()[None, :]
        p[np.diag_indices_from(p)] = 0
        self.weights = p
        return self

    def score(self, members: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[members] @ self.weights, dtype=np.float32)


CLASSES: dict[str, Any] = {"ease": EASE, "rp3beta": RP3beta, "itemknn": ItemKNN}


def load_split(name: str) -> Split:
    root = (LOCAL if name.endswith("-ts0") else SHARED) / name
    ds = load_dataset(root / "events.csv", root / "items.csv")
    if name == "amazon-beauty":
        members, items = read_pairs(root / "holdout.csv", ds)
        return holdout_split(ds, members, items)
    if name.endswith("-ts0"):
        return leave_random_share(ds, 0.2, seed=0)
    return leave_last_out(ds)


def measure(model: Model, split: Split, members: np.ndarray, exclude: Any) -> dict[str, float]:
    recs, _ = model.recommend(members, 20, exclude=exclude)
    m = ranking_metrics(recs, split.truth(), members, (10, 20), split.train.n_items)
    return {c: m[c] for c in COLUMNS}


def timed_fit(fit: Any) -> tuple[Any, float, float]:
    """(result, wall seconds, Python-side peak MiB)."""
    tracemalloc.start()
    start = time.perf_counter()
    out = fit()
    wall = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, wall, peak


def size_mib(model: Model) -> float:
    w = getattr(model, "weights", None)
    if isinstance(model, Blend):
        return 0.0  # its parts' memory, already counted
    if w is None:  # ALS
        return (model.member_factors.nbytes + model.item_factors.nbytes) / 2**20  # type: ignore[attr-defined]
    if hasattr(w, "data") and hasattr(w, "indices"):
        return (w.data.nbytes + w.indices.nbytes + w.indptr.nbytes) / 2**20
    return float(w.nbytes) / 2**20


def run(name: str, models: tuple[str, ...], quick: bool = False) -> list[dict[str, Any]]:
    split = load_split(name)
    config, _ = fit_clock(split.train, TrainConfig())
    matrix = confidence_matrix(split.train, config.weighting)
    members = np.unique(split.test_members)
    exclude = seen_matrix(split.train)
    ds = split.train
    print(f"\n== {name}: {ds.n_members:,} members, {ds.n_items:,} items, {matrix.nnz:,} pairs; "
          f"{len(members):,} test members, {len(split.test_items):,} held-out pairs", flush=True)
    rows: list[dict[str, Any]] = []

    def record(model_name: str, params: str, model: Model, wall: float, peak: float) -> dict[str, Any]:
        row = {"data": name, "model": model_name, "params": params, "fit_s": round(wall, 2),
               "peak_mib": round(peak, 1), "model_mib": round(size_mib(model), 1),
               **{c: round(v, 4) for c, v in measure(model, split, members, exclude).items()}}
        rows.append(row)
        print_row(row)
        return row

    als_models, wall, peak = timed_fit(lambda: fit_models(split, config, ("als",)))
    als = als_models["als"]
    record("als", "default", als, wall, peak)
    best: dict[str, tuple[dict[str, Any], Model]] = {}
    for kind in models:
        if kind == "ease" and ds.n_items > ease_max_items(EASE_BUDGET):
            print(f"   ease skipped: {ds.n_items:,} items > {ease_max_items(EASE_BUDGET):,}, the most "
                  f"a {EASE_BUDGET / 2**30:.0f} GiB budget holds", flush=True)
            continue
        for params in (QUICK if quick else GRIDS)[kind]:
            model, wall, peak = timed_fit(lambda p=params, c=CLASSES[kind]: c(**p).fit(ds, matrix))
            row = record(kind, " ".join(f"{k}={v:g}" for k, v in params.items()), model, wall, peak)
            if kind not in best or row["ndcg@10"] > best[kind][0]["ndcg@10"]:
                best[kind] = (row, model)
            else:
                del model
    for kind, (row, model) in best.items():
        for w in QUICK_BLEND_WEIGHTS if quick else BLEND_WEIGHTS:
            blend = Blend(f"als+{kind}", [(als, 1 - w), (model, w)])
            blend.batch_size = 1024
            record(f"als+{kind}", f"w={w:g} ({row['params']})", blend, 0.0, 0.0)
    return rows


def print_row(row: dict[str, Any]) -> None:
    print(f"   {row['model']:<14} {row['params']:<34} "
          + " ".join(f"{row[c]:.4f}" for c in COLUMNS)
          + f"  fit {row['fit_s']:7.2f}s  peak {row['peak_mib']:7.1f} MiB  model {row['model_mib']:7.1f} MiB",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=(*DATA, "all"), nargs="+", default=["amazon-beauty"])
    ap.add_argument("--models", default="ease,rp3beta,itemknn", help="comma-separated item models")
    ap.add_argument("--json", type=Path, help="also write every row here")
    ap.add_argument("--quick", action="store_true", help="3 RP3beta and 2 item kNN settings, 2 blend weights")
    args = ap.parse_args()
    models = tuple(m for m in args.models.split(",") if m)
    unknown = set(models) - set(GRIDS)
    if unknown:
        sys.exit(f"unknown model(s) {sorted(unknown)}: choose from {sorted(GRIDS)}")
    print(f"{'':3}{'model':<14} {'params':<34} " + " ".join(f"{c:>6}" for c in COLUMNS))
    names = DATA if "all" in args.data else tuple(args.data)
    rows = [r for name in names for r in run(name, models, args.quick)]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
