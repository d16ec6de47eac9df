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

from typing import Any

import numpy as np

from service.rerank.features import FEATURE_NAMES, FEATURE_VERSION, compute
from service.rerank.scorer import Reranker
from training.als import ALS
from training.config import TrainConfig
from training.dataset import Split
from training.metrics import ranking_metrics
from training.progress import Steps
from training.rerank_candidates import PoolMaker
from training.reranker import RerankerResult, fit_first_stage


def score_rerank(split: Split, config: TrainConfig, model: RerankerResult, als: ALS,
                 ks: tuple[int, ...] = (10, 20), steps: Steps | None = None,
                 info: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """{"first_stage": metrics, "rerank": metrics} on the split's held-out members.

    ``model`` was trained on ``split.train`` and has ONNX bytes; ``als`` is the first stage's ALS
    fitted on all of ``split.train``. ``info``, when given, receives the re-ranker's training
    report and pool statistics.
    """
    steps = steps or Steps(quiet=True)
    if info is not None:
        info["reranker"] = model.meta
    if model.onnx is None:
        raise ValueError(f"no re-ranker to score: {model.meta.get('skipped', 'disabled')}")
    scorer = Reranker(model.onnx, FEATURE_NAMES, FEATURE_VERSION)
    members = np.unique(split.test_members)
    fs = fit_first_stage(split.train, config, als=als, steps=steps, members=members)
    depth = max(ks)
    first = np.full((len(members), depth), -1, dtype=np.int64)
    reranked = np.full((len(members), depth), -1, dtype=np.int64)
    row_of = {int(m): r for r, m in enumerate(members)}
    pool_sizes = []
    pool_items: list[np.ndarray] = []
    with steps.step("re-ranker eval: pools, features, ONNX"):
        for m, cands in PoolMaker(fs, config).pools(members, config.reranker.candidates):
            r = row_of[m]
            pool_sizes.append(len(cands))
            pool_items.append(cands.items)
            if len(cands) == 0:
                continue
            member = fs.ctx.member_inputs(m, fs.now, vector=fs.member_factors[m])
            order = scorer.rank(compute(fs.ctx, member, cands))
            k = min(depth, len(cands))
            first[r, :k] = cands.items[:k]
            reranked[r, :k] = cands.items[order[:k]]
    truth = split.truth()
    n_items = split.train.n_items
    results = {"first_stage": ranking_metrics(first, truth, members, ks, n_items),
               "rerank": ranking_metrics(reranked, truth, members, ks, n_items)}
    if info is not None:
        info["pool"] = {"members": int(len(members)), "mean_size": float(np.mean(pool_sizes)),
                        "truth_in_pool": _truth_in_pool(split, members, pool_items)}
    return results


def _truth_in_pool(split: Split, members: np.ndarray, pools: list[np.ndarray]) -> float:
    """Share of held-out pairs whose item is in the member's pool: the re-ranker's ceiling."""
    rows = split.truth()[members]
    hits = total = 0
    for r, pool in enumerate(pools):
        t = rows.indices[rows.indptr[r]:rows.indptr[r + 1]]
        hits += int(np.isin(t, pool).sum())
        total += len(t)
    return round(hits / max(total, 1), 4)
