"""CPU cost of the re-ranker's training pools (``training.rerank_candidates.PoolMaker``) per member.

    .venv/bin/python -m load_tests.bench_pools --models MODELS_DIR [--members 3000] [--repeat 2]

The first stage is the live bundle's arrays (what ``fit_first_stage`` would give on that period),
every member's whole history counts as seen, the pools are made with the bundle's own config at
its newest event. Prints setup seconds and the fastest pass's CPU ms per member. Run from an older
checkout's root (``PYTHONPATH=.``) to time its code on the same bundle.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the trainer's pools run: one BLAS thread

import argparse  # noqa: E402
import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import ValidationError

from service.model_bundle import load
from service.rerank.features import FeatureContext
from training.config import TrainConfig
from training.rerank_candidates import FirstStage, PoolMaker


def _config(hyper: dict[str, Any]) -> TrainConfig:
    """The bundle's config, less the keys an older checkout's TrainConfig does not know yet."""
    hyper = copy.deepcopy(hyper)
    while True:
        try:
            return TrainConfig.model_validate(hyper)
        except ValidationError as e:
            extra = [err["loc"] for err in e.errors() if err["type"] == "extra_forbidden"]
            if not extra:
                raise
            for loc in extra:
                parent = hyper
                for key in loc[:-1]:
                    parent = parent[str(key)]
                del parent[str(loc[-1])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--members", type=int, default=3000, help="random members timed")
    ap.add_argument("--repeat", type=int, default=2, help="passes; the fastest is reported")
    args = ap.parse_args()
    b = load(args.models, with_index=False)
    arrays = dict(b.arrays)
    indptr = b.history_indptr
    n_members = len(indptr) - 1
    owner = np.repeat(np.arange(n_members), np.diff(indptr))
    seen = sp.csr_matrix((np.ones(len(owner)), (owner, b.history_items)), shape=(n_members, len(b.items)))
    config = _config(b.manifest.get("hyperparameters", {}))
    now = int(b.history_last_ts.max())
    fs = FirstStage(b.items, arrays, seen, FeatureContext(b.items, b.members, arrays), now)
    start = time.process_time()
    maker = PoolMaker(fs, config)
    setup = time.process_time() - start
    members = np.random.default_rng(0).choice(n_members, min(args.members, n_members), replace=False)
    n = config.reranker.candidates
    list(maker.pools(members[:50], n))  # warm: first-use caches
    best, sizes = float("inf"), [0]
    for _ in range(args.repeat):
        start = time.process_time()
        sizes = [len(c) for _, c in maker.pools(members, n)]
        best = min(best, time.process_time() - start)
    print(f"setup {setup:.2f} CPU s; pools {best / len(members) * 1e3:.3f} CPU ms per member "
          f"({len(members)} members, {n} candidates, mean pool {np.mean(sizes):.0f})")


if __name__ == "__main__":
    main()
