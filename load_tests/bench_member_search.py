"""What precomputing per-member ALS candidates in the trainer would save and cost.

    .venv/bin/python -m load_tests.bench_member_search --models MODELS_DIR [--sample 5000] [--k 64]

Times the service's own taste search (`ServingModel.search`: the length-pruned exact search) for a
sample of members' trained vectors, in process on one thread, and scales it to every member: the CPU
the trainer would spend to precompute it, and the bundle space of the top-k ids and scores. The
search is what a precomputed list would replace, and only for members without fresh events (the
others are folded in at request time).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `mallrec serve`

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from service.model import ServingModel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="models directory (its CURRENT bundle)")
    ap.add_argument("--sample", type=int, default=5000, help="members timed")
    ap.add_argument("--k", type=int, default=64, help="items per search (a page's slots share one of 64)")
    args = ap.parse_args()
    model = ServingModel.load(args.models)
    vectors = model.bundle.member_factors
    sample = np.random.default_rng(0).choice(len(vectors), min(args.sample, len(vectors)), replace=False)
    live = [m for m in sample.tolist() if vectors[m].any()]  # a zero vector (no events) is not searched
    start = time.process_time()
    for m in live:
        model.search(vectors[m], args.k)
    per = (time.process_time() - start) / max(len(live), 1)
    print(f"members {len(vectors):,}; with a vector: {len(live) / len(sample):.1%} of {len(sample):,}")
    print(f"taste search, top {args.k}: {per * 1e3:.3f} CPU ms per request")
    print(f"precomputed for every member: {per * len(vectors):.0f} CPU s in the trainer, "
          f"{len(vectors) * args.k * 8 / 2**20:.0f} MiB of ids + scores in the bundle")


if __name__ == "__main__":
    main()
