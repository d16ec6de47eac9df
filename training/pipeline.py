"""`mallrec train`: dataset -> weighted matrix -> re-ranker (with its first stage before a cutoff)
-> ALS continued from that first stage, popularity, neighbours, RP3beta -> FAISS -> bundle.

Reads like the table of contents of training; each step is one call into its own module and one
line of progress. The bundle is written through `service.model_bundle`, the format's only home.

Two ALS fits keep both cores busy; the one-threaded work runs beside them (``Beside``, a second
thread) instead of after them: member history, popularity and the member order beside the
matrices and the first-stage fit; the rest of the re-ranker's first stage (neighbours, popularity,
history), its pools, features and LightGBM beside the final fit. Same results, less wall time.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from service import model_bundle as mb
from training.als import fit_final
from training.beside import Beside
from training.config import TrainConfig
from training.dataset import Dataset, confidence_matrix, fit_clock
from training.history import member_history
from training.index import build_index
from training.neighbours import NeighbourIndex, cosine_neighbours
from training.popularity import global_popularity, trending_scores
from training.progress import Steps
from training.reranker import finish_reranker, start_reranker
from training.rp3beta import fit_item_model


def train(ds: Dataset, config: TrainConfig, models_dir: str | Path, steps: Steps | None = None,
          keep: int = 5) -> Path:
    """Fit every model on ``ds`` and publish one bundle atomically; return its directory."""
    steps = steps or Steps(quiet=True)
    started = time.perf_counter()
    bundle = build_bundle(ds, config, steps)
    path = publish(bundle, models_dir, steps, keep)
    steps.info(f"trained in {time.perf_counter() - started:.1f}s")
    return path


def publish(bundle: mb.Bundle, models_dir: str | Path, steps: Steps, keep: int = 5) -> Path:
    """Publish a built bundle (the gate calls this only once the bundle has passed)."""
    with steps.step("publish bundle"):
        return mb.publish(bundle, models_dir, keep=keep, notify=steps.info)


def build_bundle(ds: Dataset, config: TrainConfig, steps: Steps | None = None) -> mb.Bundle:
    """Fit every model on ``ds``; the bundle in memory, not yet published."""
    steps = steps or Steps(quiet=True)
    if len(ds.events) == 0:
        raise mb.BundleError("no events to train on")
    config, fallbacks = fit_clock(ds, config)  # the bundle records what ran, e.g. no decay
    for line in fallbacks.values():
        steps.info(line)

    no_factors = Beside(lambda: _factor_free(ds, config, steps), "no-factors")
    with steps.step("confidence matrix"):
        matrix = confidence_matrix(ds, config.weighting)
    # the re-ranker first: its first stage (ALS before its cutoff) is where the final ALS starts
    half = start_reranker(ds, config, steps)
    final = Beside(partial(fit_final, ds, matrix, config, steps, start=half.warm_start, bar=False), "als")
    reranker = finish_reranker(half, config, steps, beside_als=True)
    if reranker.meta.get("skipped"):
        steps.info(f"re-ranker skipped: {reranker.meta['skipped']}")
    elif reason := reranker.meta.get("valid", {}).get("reason"):
        steps.info(f"re-ranker shipped: {reason}")  # both orders' figures on its held-out members
    als, als_fit = final.result()
    for name in ("item_factors", "member_factors"):  # before the index and neighbours are built on them
        mb.check_finite(name, getattr(als, name), "train")
    del half  # the first stage's ALS is not needed any more
    reranker.warm_start = None
    with steps.step("item neighbours"):
        searched: list[NeighbourIndex] = []
        nbr_items, nbr_scores = cosine_neighbours(als.item_factors, config.neighbours.k, report=searched)
        neighbours = searched[0].as_dict()
    with steps.step("item model (RP3beta)"):
        item_model = fit_item_model(ds, matrix, config.item_model)  # the matrix ALS factorised
    if item_model.note:
        steps.info(item_model.note)
    with steps.step("FAISS index + recall check"):
        index, index_report = build_index(als.item_factors, als.member_factors, config.index,
                                          seed=config.als.seed)

    arrays = {
        "item_factors": als.item_factors,
        "member_factors": als.member_factors,
        "neighbour_items": nbr_items,
        "neighbour_scores": nbr_scores,
        **no_factors.result(),  # history, popularity, member order
        **(mb.liked_arrays(item_model.model.weights) if item_model.model is not None else {}),
    }
    manifest = {
        "version": mb.new_version(),
        "data_stats": data_stats(ds, matrix.nnz),
        "hyperparameters": config.model_dump(mode="json"),
        "index": index_report.as_dict(),
        "neighbours": neighbours,
        "metrics": {"index_recall_at_100": round(index_report.recall_at_100, 4),
                    "neighbour_recall": neighbours["recall_at_k"]},
        "reranker": reranker.meta,
        "clock_fallbacks": list(fallbacks.values()),
        "als_fit": als_fit,
        "item_model": item_model.as_dict(),
        "timings_s": steps.timings,
    }
    return mb.Bundle(manifest=manifest, items=ds.items, members=ds.members, arrays=arrays,
                     faiss_index=index, reranker_onnx=reranker.onnx)


def _factor_free(ds: Dataset, config: TrainConfig, steps: Steps) -> dict[str, np.ndarray]:
    """The bundle arrays that need no ALS factors (made beside the matrices and the first-stage fit)."""
    with steps.step("member history", bar=False):
        arrays = member_history(ds)
        arrays["member_order"] = mb.member_order(ds.members.member_id)  # the service's id lookup
    with steps.step("popularity (global, trending)", bar=False):
        arrays["popularity_global"] = global_popularity(ds, config.weighting, config.popularity.half_life)
        arrays["popularity_trending"] = trending_scores(ds, config.weighting, config.popularity)
    return arrays


def iso_time(ts: int) -> str:
    """Epoch seconds as an ISO 8601 UTC time, e.g. 2026-09-04T12:00:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def data_stats(ds: Dataset, nnz: int) -> dict[str, Any]:
    ev = ds.events
    by_event = np.bincount(ev.event, minlength=len(mb.EVENT_TYPES))
    return {
        "events": int(len(ev)),
        "members": int(ds.n_members),
        "items": int(ds.n_items),
        "member_item_pairs": int(nnz),
        "events_by_type": {name: int(c) for name, c in zip(mb.EVENT_TYPES, by_event, strict=True)},
        "ts_min": int(ev.ts.min()) if len(ev) else None,
        "ts_max": int(ev.ts.max()) if len(ev) else None,
        # the data window as people read it (UTC), shown by `mallrec models list`
        "events_from": iso_time(int(ev.ts.min())) if len(ev) else None,
        "events_to": iso_time(int(ev.ts.max())) if len(ev) else None,
        "input_report": {k: v for k, v in ev.report.items() if k != "examples"},
    }
