"""A reference for `mallrec tune`: a hand-picked raw `implicit` ALS fit, scored as `evaluate` scores.

No mallrec weighting, decay or re-solve: the member x item matrix of the training events (binary,
or the count of events per pair) goes straight into ``implicit.als.AlternatingLeastSquares``, and
each held-out member's top items are ranked over the whole catalogue, their training items excluded.
Metrics: HR@10, NDCG@10, Recall@20, NDCG@20 (training.metrics.ranking_metrics, as `evaluate`).

Splits (the same as the tune/evaluate comparison uses):

    --holdout FILE        the pairs of a holdout file (amazon-beauty's holdout.csv); all events train
    --split random        a seeded random --test-share of each member's items (data without a clock)
    --split last          each member's last event

Usage:
    OPENBLAS_NUM_THREADS=1 python load_tests/bench_raw_implicit.py \\
        --events /work/shared/datasets/amazon-beauty/events.csv \\
        --items /work/shared/datasets/amazon-beauty/items.csv \\
        --holdout /work/shared/datasets/amazon-beauty/holdout.csv
    OPENBLAS_NUM_THREADS=1 python load_tests/bench_raw_implicit.py \\
        --events /work/data/amazon-beauty-ts0/events.csv --items /work/data/amazon-beauty-ts0/items.csv \\
        --split random --test-share 0.2 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from training.dataset import Split, holdout_split, leave_last_out, leave_random_share  # noqa: E402
from training.events import load_dataset, read_pairs  # noqa: E402
from training.metrics import ranking_metrics  # noqa: E402

COLUMNS = ("hr@10", "ndcg@10", "recall@20", "ndcg@20")


def split_of(args: argparse.Namespace) -> Split:
    ds = load_dataset(args.events, args.items)
    if args.holdout is not None:
        return holdout_split(ds, *read_pairs(args.holdout, ds))
    if args.split == "random":
        return leave_random_share(ds, args.test_share, args.seed)
    return leave_last_out(ds)


def run(split: Split, factors: int, regularization: float, alpha: float, iterations: int,
        binary: bool, seed: int) -> dict[str, float]:
    from implicit.als import AlternatingLeastSquares

    ev = split.train.events
    shape = (split.train.n_members, split.train.n_items)
    matrix = sp.csr_matrix((np.ones(len(ev), dtype=np.float32), (ev.member, ev.item)), shape=shape)
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1.0
    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                    iterations=iterations, random_state=seed, use_gpu=False)
    model.fit(matrix, show_progress=False)
    members = np.unique(split.test_members)
    ids, _ = model.recommend(members, matrix[members], N=20, filter_already_liked_items=True)
    return ranking_metrics(ids, split.truth(), members, (10, 20), split.train.n_items)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=Path, required=True)
    p.add_argument("--items", type=Path, required=True)
    p.add_argument("--holdout", type=Path)
    p.add_argument("--split", choices=("random", "last"), default="last")
    p.add_argument("--test-share", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--factors", type=int, default=128)
    p.add_argument("--regularization", type=float, default=0.01)
    p.add_argument("--alpha", type=float, default=[1.0, 10.0, 40.0], nargs="+",
                   help="One row per value (the confidence scale: 1 + alpha x count).")
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--count", action="store_true", help="Events per pair instead of a binary matrix.")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    split = split_of(args)
    where = args.holdout or f"{args.split}" + (f" {args.test_share:g} seed {args.seed}"
                                              if args.split == "random" else "")
    print(f"split: {where}; {len(split.test_members):,} held-out pairs, "
          f"{len(np.unique(split.test_members)):,} members")
    rows = []
    for alpha in args.alpha:
        t0 = time.perf_counter()
        m = run(split, args.factors, args.regularization, alpha, args.iterations, not args.count, args.seed)
        row = {"factors": args.factors, "regularization": args.regularization, "alpha": alpha,
               "iterations": args.iterations, "matrix": "count" if args.count else "binary",
               **{c: m[c] for c in COLUMNS}, "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(f"implicit ALS f={args.factors} reg={args.regularization:g} alpha={alpha:g} "
              f"it={args.iterations} {row['matrix']}: "
              + "  ".join(f"{c} {m[c]:.4f}" for c in COLUMNS) + f"  ({row['seconds']:.0f}s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"split": str(where), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
