"""Offline evaluation of the re-ranker: the first-stage order against the re-ranked order.

    results = evaluate(split, config)            # training/evaluate.py calls score_rerank:
    results["first_stage"], results["rerank"]   # ranking_metrics dicts, the same keys as the others

The re-ranker is trained only on ``split.train`` (with its own inner cutoff, training/reranker.py);
the first stage is the one `evaluate` fitted on all of ``split.train`` (as `train` would before
publishing), and every held-out member gets one candidate pool made as the service makes it. Both
orders rank the same pool, and the metrics average over the same members as `evaluate`'s other rows
(members whose pool misses the truth count as misses for both), so the rows compare directly. The
re-ranked order is scored through the ONNX model and the service's scorer: what is measured is what
would be served. A re-ranker its gate refused (training/rerank_gate.py) has no ONNX model: `evaluate`
notes the gate's reason, with both of its figures, instead of these rows.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from service.rerank.features import FEATURE_NAMES, FEATURE_VERSION, compute
from service.rerank.scorer import Reranker
from training.als import ALS
from training.config import TrainConfig
from training.dataset import Split
from training.metrics import ranking_metrics
from training.progress import Steps
from training.rerank_candidates import FirstStage, PoolMaker
from training.reranker import RerankerResult, fit_first_stage

#: Members per task of the worker processes (about a second of work each): small enough to spread
#: the members evenly and move the bar, large enough that a task's overhead does not show.
CHUNK = 512
#: Below this many members the pools are made in this process (starting workers costs more).
PARALLEL_FROM = 2_000


def score_rerank(split: Split, config: TrainConfig, model: RerankerResult, als: ALS,
                 ks: tuple[int, ...] = (10, 20), steps: Steps | None = None,
                 info: dict[str, Any] | None = None, workers: int | None = None
                 ) -> dict[str, dict[str, float]]:
    """{"first_stage": metrics, "rerank": metrics} on the split's held-out members.

    ``model`` was trained on ``split.train`` and has ONNX bytes; ``als`` is the first stage's ALS
    fitted on all of ``split.train``. ``info``, when given, receives the re-ranker's training
    report and pool statistics. The members' pools, features and scores are made by ``workers``
    forked processes (default: one per core, Linux only, from PARALLEL_FROM members); every member
    gets the same pool and scores wherever it runs.
    """
    steps = steps or Steps(quiet=True)
    if info is not None:
        info["reranker"] = model.meta
    if model.onnx is None:
        raise ValueError(f"no re-ranker to score: {model.meta.get('skipped', 'disabled')}")
    members = np.unique(split.test_members)
    fs = fit_first_stage(split.train, config, als=als, steps=steps, members=members)
    depth = max(ks)
    truth = split.truth()
    job = _Job(PoolMaker(fs, config), fs, config.reranker.candidates, model.onnx, depth, truth)
    chunks = [members[a:a + CHUNK] for a in range(0, len(members), CHUNK)]
    n_workers = _workers(workers, len(members))
    ranked: list[_Ranked] = []
    # the workers fork before the progress bar starts its thread, and inherit the job (not pickled)
    with _pool(job, n_workers) as pool, steps.step("re-ranker eval: pools, features, ONNX",
                                                    total=len(members)) as advance:
        for part in (pool.imap(_rank, chunks) if pool is not None else map(_rank_here(job), chunks)):
            ranked.append(part)
            advance(len(part.first))
    first = np.concatenate([r.first for r in ranked]) if ranked else np.full((0, depth), -1, np.int64)
    reranked = np.concatenate([r.reranked for r in ranked]) if ranked else first
    n_items = split.train.n_items
    results = {"first_stage": ranking_metrics(first, truth, members, ks, n_items),
               "rerank": ranking_metrics(reranked, truth, members, ks, n_items)}
    if info is not None:
        sizes = np.concatenate([r.sizes for r in ranked]) if ranked else np.zeros(0)
        hits, total = sum(r.hits for r in ranked), sum(r.total for r in ranked)
        info["pool"] = {"members": int(len(members)),
                        "mean_size": float(np.mean(sizes)) if len(sizes) else 0.0,
                        "truth_in_pool": round(hits / max(total, 1), 4), "workers": n_workers}
    return results


@dataclass
class _Job:
    """What every member's ranking needs; forked workers inherit it."""

    maker: PoolMaker
    fs: FirstStage
    n: int  # candidates per pool
    onnx: bytes
    depth: int
    truth: sp.csr_matrix
    scorer: Reranker | None = None  # made on first use in each process (a session is not forked)


@dataclass
class _Ranked:
    """One chunk of members, in order: the first k of each pool in the first stage's and the model's
    order (-1 padded), the pool sizes, and held-out pairs found in the pools (the re-ranker's ceiling)."""

    first: np.ndarray
    reranked: np.ndarray
    sizes: np.ndarray
    hits: int
    total: int


_JOB: _Job | None = None  # the forked workers' job: set just before they fork


def _rank(members: np.ndarray) -> _Ranked:
    assert _JOB is not None
    return _rank_with(_JOB, members)


def _rank_here(job: _Job) -> Callable[[np.ndarray], _Ranked]:
    return lambda members: _rank_with(job, members)


def _rank_with(job: _Job, members: np.ndarray) -> _Ranked:
    if job.scorer is None:
        job.scorer = Reranker(job.onnx, FEATURE_NAMES, FEATURE_VERSION)
    fs, depth = job.fs, job.depth
    first = np.full((len(members), depth), -1, dtype=np.int64)
    reranked = np.full((len(members), depth), -1, dtype=np.int64)
    sizes = np.zeros(len(members), dtype=np.int64)
    hits = total = 0
    for r, (m, cands) in enumerate(job.maker.pools(members, job.n)):
        sizes[r] = len(cands)
        t = job.truth.indices[job.truth.indptr[m]:job.truth.indptr[m + 1]]
        hits += int(np.isin(t, cands.items).sum())
        total += len(t)
        if len(cands) == 0:
            continue
        member = fs.ctx.member_inputs(m, fs.now, vector=fs.member_factors[m])
        order = job.scorer.rank(compute(fs.ctx, member, cands))
        k = min(depth, len(cands))
        first[r, :k] = cands.items[:k]
        reranked[r, :k] = cands.items[order[:k]]
    return _Ranked(first, reranked, sizes, hits, total)


def _workers(asked: int | None, members: int) -> int:
    if asked is not None:
        return max(1, asked)
    if members < PARALLEL_FROM or not sys.platform.startswith("linux"):
        return 1
    return max(1, min(os.cpu_count() or 1, -(-members // CHUNK)))


@contextmanager
def _pool(job: _Job, workers: int) -> Iterator[Any]:
    """``workers`` forked processes that run ``_rank`` on the job, or None for this process alone."""
    global _JOB
    if workers <= 1:
        yield None
        return
    _JOB = job
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield pool
    finally:
        _JOB = None
