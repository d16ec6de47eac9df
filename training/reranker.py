"""The learned re-ranker: LightGBM lambdarank on the service's own candidates, exported to ONNX.

How the training data is made, so nothing from the future leaks into a row:

1. A cutoff T splits the events (``reranker.label_split``, within what the clock allows:
   ``training.dataset.read_clock``): "time" puts T before the last ``label_share`` of the time span
   (or ``label_window``); "last" holds out each member's last event; "random" holds out a seeded
   random item per member. Features and the first stage see only events at or before T; labels come
   only from events after T (or from the held-out items).
2. The first stage (ALS, popularity, trending, neighbours, member history, RP3beta) is fitted on the
   pre-T events, in bundle form, and candidates are made as the service makes them
   (training/rerank_candidates.py).
3. Each candidate's row comes from service/rerank/features.py (the service's own feature code),
   with ``now = T``. Its label is the strongest event the member had on it after T, graded
   none 0 < view 0.5 < click 1 < fav 2 < cart 3 < purchase 4 (LABEL_GAIN): conversion counts most.
4. Members are the ranking groups; groups without a labelled candidate carry no gradient and are
   left out of the fit. ``gate_share`` of the groups are held out: the re-ranker ships only if it
   ranks them no worse than its first stage (training/rerank_gate.py; manifest["reranker"]["valid"]).

The booster is converted with onnxmltools (target opset 15, raw scores) and the ONNX scores are
checked against LightGBM's on held-out rows through the service's own scorer; the largest
difference is recorded and a model that disagrees by more than ONNX_TOLERANCE is not shipped.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from service.model_bundle import liked_arrays
from service.rerank.features import FEATURE_NAMES, FEATURE_VERSION, RECENT, FeatureContext, compute
from service.rerank.scorer import Reranker
from training.als import ALS
from training.config import RerankerConfig, TrainConfig
from training.dataset import Dataset, confidence_matrix, random_item_per_member, read_clock, seen_matrix
from training.history import member_history, stable_argsort
from training.neighbours import cosine_neighbours
from training.popularity import global_popularity, trending_scores
from training.progress import Steps
from training.rerank_candidates import SEEDS, FirstStage, PoolMaker
from training.rerank_gate import LABEL_GAIN, hold_out, judge
from training.rp3beta import fit_item_model

if TYPE_CHECKING:
    from lightgbm import Booster

ONNX_TOLERANCE = 1e-4


@dataclass
class Labels:
    """Events split at the cutoff: what features may see, and graded (member, item) labels."""

    features: Dataset
    member: np.ndarray  # int64, sorted
    item: np.ndarray  # int64
    level: np.ndarray  # int: 1 + EVENT_TYPES index of the strongest event after the cutoff
    cutoff: float | None  # "time": feature events have ts <= cutoff < label events' ts
    split: str = "time"  # the split that made them ("auto" resolves to "time" or "last")
    note: str | None = None  # why the split is not the one asked for (said once, kept in the manifest)

    def of(self, members: np.ndarray) -> np.ndarray:
        """Those of ``members`` (sorted unique) that have at least one label."""
        return members[np.isin(members, self.member, kind="table")]  # a lookup table, not a sort


def label_split(ds: Dataset, cfg: RerankerConfig) -> Labels:
    """Cut the events into a feature period and graded labels (see the module docstring).

    The clock decides what may be asked (``read_clock``): without one (every event at one time) the
    file's order is not taken for time, and each member's label is a seeded random item of theirs
    whatever the config asks; with an order-only clock (positions) "auto" and "time" hold out each
    member's last event, as a global time cutoff over positions means nothing. With a time clock,
    "auto" is the time cutoff unless it leaves fewer than ``min_groups`` labelled members, then each
    member's last event.
    """
    asked, kind = cfg.label_split, read_clock(ds.events).kind
    if kind == "none" and asked != "random":
        return _split(ds, cfg, "random", note=(
            f"label split: every event has the same time, so each member's label is a seeded random "
            f"item of theirs, not a {'time cutoff' if asked != 'last' else 'last event'} "
            f"(reranker.label_split = {asked!r})"))
    if kind == "order" and asked in ("auto", "time"):
        return _split(ds, cfg, "last", note=(
            f"label split: the events' times are positions in each member's history, so each "
            f"member's last event is their label, not a time cutoff (reranker.label_split = {asked!r})"))
    if asked == "auto":
        by_time = _split(ds, cfg, "time")
        labelled = len(np.unique(by_time.member))
        if labelled >= cfg.min_groups:
            return by_time
        return _split(ds, cfg, "last", note=(
            f"label split: a time cutoff labels {labelled} members (fewer than min_groups="
            f"{cfg.min_groups}), so each member's last event is their label"))
    return _split(ds, cfg, asked)


def _split(ds: Dataset, cfg: RerankerConfig, split: str, note: str | None = None) -> Labels:
    ev = ds.events
    cutoff: float | None = None
    if split == "time":
        lo, hi = int(ev.ts.min()), int(ev.ts.max())
        window = cfg.label_window or cfg.label_share * (hi - lo)
        cutoff = float(np.floor(hi - window))
        feature_mask = ev.ts <= cutoff
        held = np.flatnonzero(~feature_mask)
    elif split == "random":
        held_pair, pair_of = random_item_per_member(ds, cfg.seed)
        feature_mask = ~held_pair[pair_of]
        held = np.flatnonzero(~feature_mask)
    else:
        order = np.lexsort((np.arange(len(ev)), ev.ts, ev.member))
        last = np.r_[ev.member[order][1:] != ev.member[order][:-1], True]
        counts = np.bincount(ev.member, minlength=ds.n_members)
        held = order[last & (counts[ev.member[order]] > 1)]
        feature_mask = np.ones(len(ev), dtype=bool)
        feature_mask[held] = False
    features = ds.with_events(ev.subset(feature_mask))
    m, i, lvl = ev.member[held].astype(np.int64), ev.item[held].astype(np.int64), ev.event[held] + 1
    has_features = np.bincount(features.events.member, minlength=ds.n_members) > 0
    keep = has_features[m]
    if cfg.exclude_seen and len(m):
        seen = seen_matrix(features)
        keep &= np.asarray(seen[m, i]).ravel() == 0
    m, i, lvl = m[keep], i[keep], lvl[keep]
    # strongest event per (member, item): one int64 key, sorted by (member, item, strongest first)
    top = len(LABEL_GAIN) - 1
    key = (m * ds.n_items + i) * (top + 1) + (top - lvl)
    order, skey = stable_argsort(key)
    pair = skey // (top + 1)
    pick = order[np.r_[True, pair[1:] != pair[:-1]]] if len(pair) else order
    return Labels(features, m[pick], i[pick], lvl[pick].astype(np.int64), cutoff, split, note)


def fit_first_stage(ds: Dataset, config: TrainConfig, als: ALS | None = None,
                    iterations: int | None = None, steps: Steps | None = None,
                    members: np.ndarray | None = None) -> FirstStage:
    """ALS, popularity, trending, neighbours and history on ``ds``, as a bundle would hold them, and
    RP3beta's W when the pools use the "liked" source.

    ``als``: an ALS already fitted on ``ds`` (`fit_first_als`); otherwise ALS is fitted here
    with ``iterations`` sweeps (default: the config's). ``members``: the only members whose pools
    will be made (history and seen items are kept for them alone, and neighbours are searched only
    for their recent items, which saves time at scale).
    """
    steps = steps or Steps(quiet=True)
    if als is None:
        als = fit_first_als(ds, config, iterations, steps)
    own = ds
    if members is not None:
        wanted = np.zeros(ds.n_members, dtype=bool)
        wanted[members] = True
        own = ds.with_events(ds.events.subset(wanted[ds.events.member]))
    with steps.step("re-ranker: neighbours, popularity, history"):
        history = member_history(own)
        nbr_items, nbr_scores = _neighbours(als.item_factors, config.neighbours.k,
                                            None if members is None else recent_items(history))
        arrays = {
            "item_factors": als.item_factors,
            "member_factors": als.member_factors,
            "popularity_global": global_popularity(ds, config.weighting, config.popularity.half_life),
            "popularity_trending": trending_scores(ds, config.weighting, config.popularity),
            "neighbour_items": nbr_items,
            "neighbour_scores": nbr_scores,
            **history,
        }
    if config.reranker.sources.get("liked", 0) > 0:  # the pools' "because you liked": RP3beta before T
        with steps.step("re-ranker: item model (RP3beta)"):
            fit = fit_item_model(ds, confidence_matrix(ds, config.weighting), config.item_model)
        if fit.model is not None:
            arrays.update(liked_arrays(fit.model.weights))
    return FirstStage(ds.items, arrays, seen_matrix(own),
                      FeatureContext(ds.items, ds.members, arrays), ds.now, als)


def recent_items(history: dict[str, np.ndarray], n: int = max(RECENT, SEEDS)) -> np.ndarray:
    """Each member's ``n`` most recently touched items (the order `MemberInputs.recent` and the pools'
    seeds take: newest first, ties in history order): the only items whose neighbours the pools
    and the features look up."""
    indptr, last = history["history_indptr"], history["history_last_ts"]
    member = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.lexsort((np.arange(len(last)), -last, member))
    rank = np.arange(len(order)) - indptr[member[order]]
    return np.unique(history["history_items"][order[rank < n]])


def fit_first_als(ds: Dataset, config: TrainConfig, iterations: int | None = None,
                  steps: Steps | None = None) -> ALS:
    """The first stage's ALS on the events before the cutoff."""
    steps = steps or Steps(quiet=True)
    matrix = confidence_matrix(ds, config.weighting)
    total = iterations or config.als.iterations
    with steps.step("re-ranker: ALS before the cutoff", total=total) as advance:
        return ALS(config.als, config.weighting, on_iteration=lambda _it: advance(1)).fit(
            ds, matrix, iterations=total)


def _neighbours(vectors: np.ndarray, k: int, queries: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Item neighbours; with ``queries`` (unique items), only those items' rows are searched (the
    others stay -1: pools and features look up neighbours of a member's recent items only)."""
    if queries is None:
        return cosine_neighbours(vectors, k)
    ids, sims = cosine_neighbours(vectors, k, queries=queries)
    all_ids = np.full((len(vectors), ids.shape[1]), -1, dtype=ids.dtype)
    all_sims = np.zeros((len(vectors), sims.shape[1]), dtype=sims.dtype)
    all_ids[queries], all_sims[queries] = ids, sims
    return all_ids, all_sims


@dataclass
class Rows:
    """Feature rows of candidate pools, one group per member (first-stage order inside a group)."""

    x: np.ndarray  # float32 [rows, N_FEATURES]
    y: np.ndarray  # int relevance level per row
    groups: np.ndarray  # rows per group
    members: np.ndarray  # member per group
    items: np.ndarray  # item per row


def build_rows(fs: FirstStage, config: TrainConfig, members: np.ndarray, labels: Labels | None,
               only_labelled: bool = False) -> Rows:
    """Pools -> features (service code, now = the first stage's clock) and label levels.

    ``only_labelled`` (training): members without a labelled candidate are dropped, and only
    ``reranker.negatives`` random unlabelled candidates of each pool are kept (lambdarank learns
    the same order from fewer rows, in a fraction of the time).
    """
    n, negatives = config.reranker.candidates, config.reranker.negatives
    rng = np.random.default_rng(config.reranker.seed)
    pm = PoolMaker(fs, config)
    xs, ys, sizes, ms, its = [], [], [], [], []
    lab_m = labels.member if labels is not None else np.zeros(0, np.int64)
    for m, cands in pm.pools(members, n):
        lo, hi = np.searchsorted(lab_m, [m, m + 1])
        y = np.zeros(len(cands), dtype=np.int64)
        if labels is not None and hi > lo and len(cands):
            order = np.argsort(labels.item[lo:hi])
            li, ll = labels.item[lo:hi][order], labels.level[lo:hi][order]
            pos = np.minimum(np.searchsorted(li, cands.items), len(li) - 1)
            hit = li[pos] == cands.items
            y[hit] = ll[pos[hit]]
        if len(cands) == 0 or (only_labelled and not y.any()):
            continue
        member = fs.ctx.member_inputs(m, fs.now, vector=fs.member_factors[m])
        x = compute(fs.ctx, member, cands)  # on the whole pool: some features are pool-relative
        keep = np.arange(len(cands))
        if only_labelled and negatives and (y == 0).sum() > negatives:
            sampled = rng.choice(np.flatnonzero(y == 0), negatives, replace=False)
            keep = np.sort(np.concatenate([np.flatnonzero(y), sampled]))
        xs.append(x[keep])
        ys.append(y[keep])
        sizes.append(len(keep))
        ms.append(m)
        its.append(cands.items[keep])
    if not xs:
        empty = np.zeros(0, dtype=np.int64)
        return Rows(np.zeros((0, len(FEATURE_NAMES)), np.float32), empty, empty, empty, empty)
    return Rows(np.vstack(xs), np.concatenate(ys), np.array(sizes), np.array(ms), np.concatenate(its))


def lightgbm() -> ModuleType:
    """LightGBM, imported without scikit-learn unless something imported that already.

    LightGBM imports scikit-learn only for its scikit-learn API, which mallrec does not use, and
    scikit-learn is most of the import's time. While ``sys.modules["sklearn"]`` is None, ``import sklearn``
    raises ImportError and LightGBM goes on without it (lightgbm.compat); the entry is removed again
    right after. `train` calls this on its main thread; nothing beside it imports scikit-learn.
    """
    if (loaded := sys.modules.get("lightgbm")) is not None:
        return loaded
    blocked = "sklearn" not in sys.modules
    if blocked:
        sys.modules["sklearn"] = None  # type: ignore[assignment]  # None blocks the import
    try:
        import lightgbm as module
    finally:
        if blocked and "sklearn" in sys.modules and sys.modules["sklearn"] is None:
            del sys.modules["sklearn"]
    return module


def fit_booster(rows: Rows, cfg: RerankerConfig, threads: int | None = None) -> Booster:
    """LightGBM lambdarank with the graded gains; groups are members. ``threads`` overrides the
    config's (`train` asks for one while the final ALS fits beside it on the other cores)."""
    lgb = lightgbm()
    params: dict[str, Any] = {
        "objective": "lambdarank", "label_gain": list(LABEL_GAIN), "lambdarank_truncation_level": 20,
        "num_leaves": cfg.leaves, "learning_rate": cfg.learning_rate,
        "min_data_in_leaf": cfg.min_data_in_leaf, "feature_fraction": 0.9, "seed": cfg.seed,
        # column-wise histograms: our rows are few and wide, where LightGBM's col-wise mode costs less
        "deterministic": True, "force_col_wise": True, "verbose": -1,
    }
    if threads or cfg.threads:
        params["num_threads"] = threads or cfg.threads
    data = lgb.Dataset(rows.x, label=rows.y, group=rows.groups, feature_name=list(FEATURE_NAMES),
                       free_raw_data=False)
    return lgb.train(params, data, num_boost_round=cfg.trees)


def export_onnx(booster: Booster) -> bytes:
    """Booster -> ONNX bytes: one float32 input ``features`` [n, N_FEATURES], raw scores out."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    inputs = [("features", FloatTensorType([None, len(FEATURE_NAMES)]))]
    model = convert_lightgbm(booster, initial_types=inputs, target_opset=15, zipmap=False)
    model.doc_string = f"mallrec re-ranker, feature version {FEATURE_VERSION}"
    return model.SerializeToString()


def onnx_max_abs_diff(onnx_bytes: bytes, booster: Booster, x: np.ndarray) -> float:
    """Largest |ONNX - LightGBM| score on ``x``, through the service's scorer."""
    scorer = Reranker(onnx_bytes, FEATURE_NAMES, FEATURE_VERSION)
    return float(np.max(np.abs(scorer.score(x) - booster.predict(x)))) if len(x) else 0.0


@dataclass
class RerankerResult:
    """What `train` ships: ONNX bytes (None when skipped) and the manifest section."""

    onnx: bytes | None
    meta: dict[str, Any]
    booster: Any = None
    rows: dict[str, Rows] = field(default_factory=dict)
    # the ALS fitted before the cutoff: the final ALS starts from its factors
    # (AlsConfig.warm_iterations); None when no first stage was fitted or warm starts are off.
    warm_start: ALS | None = None


@dataclass
class FirstHalf:
    """The re-ranker up to its first stage: labels, the sampled members, the ALS fitted before the
    cutoff. ``done`` is the whole result already when there is nothing more to do (disabled, or too
    few labelled members)."""

    meta: dict[str, Any]
    started: float
    labels: Labels | None = None
    members: np.ndarray | None = None
    valid_mask: np.ndarray | None = None
    first_als: ALS | None = None  # the first stage's ALS; the rest of the first stage comes in finish
    rng: np.random.Generator | None = None  # the sampling draws go on from it (same rows as one pass)
    warm_start: ALS | None = None  # where the final ALS starts (AlsConfig.warm_iterations), or None
    done: RerankerResult | None = None


def train_reranker(ds: Dataset, config: TrainConfig, steps: Steps | None = None) -> RerankerResult:
    """The whole recipe: cutoff -> first stage -> pools + features + labels -> lambdarank -> ONNX."""
    steps = steps or Steps(quiet=True)
    return finish_reranker(start_reranker(ds, config, steps), config, steps)


def start_reranker(ds: Dataset, config: TrainConfig, steps: Steps) -> FirstHalf:
    """Cutoff, sampled members, the first stage's ALS (before the cutoff): what the final ALS starts
    from. `mallrec train` fits the final ALS beside ``finish_reranker`` (training/pipeline.py),
    which makes the rest of the first stage (neighbours, popularity, history) and the rows."""
    cfg = config.reranker
    started = time.perf_counter()
    if not cfg.enabled:
        return FirstHalf({"enabled": False}, started, done=RerankerResult(None, {"enabled": False}))
    labels = label_split(ds, cfg)
    meta: dict[str, Any] = {"enabled": True, "feature_names": list(FEATURE_NAMES),
                            "feature_version": FEATURE_VERSION, "label_split": labels.split,
                            "cutoff": labels.cutoff, "label_gain": list(LABEL_GAIN)}
    if labels.note:
        meta["label_split_note"] = labels.note
        steps.info(labels.note)
    members = labels.of(np.arange(ds.n_members))
    if len(members) < cfg.min_groups:
        meta["skipped"] = (f"{len(members)} members have labels after the cutoff, fewer than "
                           f"min_groups={cfg.min_groups}: no re-ranker in this bundle")
        return FirstHalf(meta, started, done=RerankerResult(None, meta))
    rng = np.random.default_rng(cfg.seed)
    # up to max_groups members to train on, and the gate's share held out beside them
    wanted = int(np.ceil(cfg.max_groups / (1 - cfg.gate_share)))
    if len(members) > wanted:
        members = np.sort(rng.choice(members, wanted, replace=False))
    valid_mask = hold_out(len(members), cfg.gate_share, rng)
    als = fit_first_als(labels.features, config, iterations=config.als.staged()[0], steps=steps)
    warm = als if config.als.warm_iterations else None
    return FirstHalf(meta, started, labels, members, valid_mask, als, rng, warm)


def finish_reranker(half: FirstHalf, config: TrainConfig, steps: Steps,
                    beside_als: bool = False) -> RerankerResult:
    """The rest of the first stage (neighbours, popularity, history), pools + features + labels ->
    lambdarank -> ONNX, checked against LightGBM.

    ``beside_als``: the final ALS fits on another thread meanwhile, so LightGBM takes one thread
    unless the config sets ``reranker.threads`` (measured at 10M events: all cores for both made
    the pair slower than one for LightGBM)."""
    if half.done is not None:
        return half.done
    assert half.first_als is not None and half.labels is not None and half.rng is not None
    assert half.members is not None and half.valid_mask is not None
    cfg, labels, meta, warm = config.reranker, half.labels, half.meta, half.warm_start
    members, valid_mask, rng = half.members, half.valid_mask, half.rng
    fs = fit_first_stage(labels.features, config, als=half.first_als, steps=steps, members=members)
    with steps.step("re-ranker: candidates + features"):
        train_rows = build_rows(fs, config, members[~valid_mask], labels, only_labelled=True)
        valid_rows = build_rows(fs, config, members[valid_mask], labels)
    if len(train_rows.groups) < cfg.min_groups:
        meta["skipped"] = (f"only {len(train_rows.groups)} members have a labelled item among their "
                           f"candidates, fewer than min_groups={cfg.min_groups}: no re-ranker")
        return RerankerResult(None, meta, warm_start=warm)
    with steps.step("re-ranker: LightGBM lambdarank", total=None):
        booster = fit_booster(train_rows, cfg, threads=1 if beside_als and not cfg.threads else None)
    with steps.step("re-ranker: ONNX export + check, gate"):
        onnx_bytes = export_onnx(booster)
        check = valid_rows.x if len(valid_rows.x) else train_rows.x
        check = check[rng.choice(len(check), min(len(check), 20_000), replace=False)]
        diff = onnx_max_abs_diff(onnx_bytes, booster, check)
        # the gate ranks by what would be served: the ONNX model through the service's scorer
        verdict = judge(valid_rows, Reranker(onnx_bytes, FEATURE_NAMES, FEATURE_VERSION).score(valid_rows.x)
                        if len(valid_rows.x) else np.zeros(0), cfg.gate_tolerance)
    gain = booster.feature_importance("gain")
    top = np.argsort(-gain)[:10]
    meta.update({
        "trees": booster.num_trees(), "leaves": cfg.leaves, "learning_rate": cfg.learning_rate,
        "candidates": cfg.candidates, "sources": cfg.sources,
        "onnx_max_abs_diff": diff, "onnx_bytes": len(onnx_bytes),
        "train": {"groups": int(len(train_rows.groups)), "rows": int(len(train_rows.y)),
                  "labelled_rows": int((train_rows.y > 0).sum()),
                  "labels_after_cutoff": int(len(labels.member))},
        "valid": verdict.as_manifest(),
        "top_features_by_gain": {FEATURE_NAMES[j]: round(float(gain[j]), 1) for j in top},
        "seconds": round(time.perf_counter() - half.started, 1),
    })
    rows = {"train": train_rows, "valid": valid_rows}
    if diff > ONNX_TOLERANCE:
        meta["skipped"] = f"ONNX differs from LightGBM by {diff:.2e} (> {ONNX_TOLERANCE}): not shipped"
    elif not verdict.shipped:
        meta["skipped"] = verdict.reason
    return RerankerResult(None if meta.get("skipped") else onnx_bytes, meta, booster, rows, warm)
