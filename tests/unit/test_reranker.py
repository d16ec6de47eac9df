"""Re-ranker training: no leakage across the cutoff, ONNX == LightGBM, a scorer that fails safely."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from service import model_bundle as mb
from service.rerank.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    N_FEATURES,
    Candidates,
    FeatureContext,
    compute,
)
from service.rerank.scorer import Reranker, RerankError
from tests.factories import DAY, make_dataset
from training.config import TrainConfig
from training.dataset import temporal
from training.neighbours import cosine_neighbours
from training.rerank_candidates import PoolMaker
from training.reranker import build_rows, export_onnx, fit_first_stage, label_split, train_reranker

CFG = TrainConfig.model_validate({
    "als": {"factors": 8, "iterations": 3}, "neighbours": {"k": 10},
    "reranker": {"trees": 20, "leaves": 7, "min_data_in_leaf": 5, "candidates": 30, "min_groups": 20},
})


@pytest.fixture(scope="module")
def ds():
    return make_dataset(members=160, n_items=80, seed=4)


@pytest.fixture(scope="module")
def trained(ds):
    return train_reranker(ds, CFG)


@pytest.fixture(scope="module")
def onnx_model():
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, N_FEATURES)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1)
    booster = lgb.train({"objective": "lambdarank", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5},
                        lgb.Dataset(x, label=y, group=[20] * 20), num_boost_round=5)
    return export_onnx(booster), booster, x


# --------------------------------------------------------------------------- leakage


def test_time_split_features_before_labels_after(ds):
    labels = label_split(ds, CFG.reranker)
    ev = ds.events
    assert labels.features.events.ts.max() <= labels.cutoff < ev.ts.max()
    assert len(labels.features.events) == int((ev.ts <= labels.cutoff).sum())
    after = ev.ts > labels.cutoff
    for m, i, level in zip(labels.member[:50], labels.item[:50], labels.level[:50], strict=True):
        pair = (ev.member == m) & (ev.item == i)
        assert (pair & after).any() and not (pair & ~after).any()  # after only, never seen before
        assert level == ev.event[pair & after].max() + 1  # the strongest event after the cutoff


def test_last_split_holds_out_each_members_last_event(ds):
    cfg = CFG.reranker.model_copy(update={"label_split": "last", "exclude_seen": False})
    labels = label_split(ds, cfg)
    ev = ds.events
    assert len(labels.features.events) == len(ev) - len(labels.member)
    for m, i in zip(labels.member[:30], labels.item[:30], strict=True):
        own = np.flatnonzero(ev.member == m)
        last = own[np.lexsort((own, ev.ts[own]))[-1]]
        assert ev.item[last] == i
        assert labels.features.events.ts[labels.features.events.member == m].max() <= ev.ts[last]


def test_auto_split_uses_time_unless_too_few_members_have_labels_after_it(ds):
    auto = CFG.reranker.model_copy(update={"label_split": "auto"})  # the default
    assert label_split(ds, auto).split == "time"  # 160 members, most act in the last 20% of time
    few = auto.model_copy(update={"min_groups": 10_000})
    picked = label_split(ds, few)
    assert picked.split == "last" and picked.cutoff is None
    last = label_split(ds, few.model_copy(update={"label_split": "last"}))
    assert np.array_equal(picked.member, last.member)


def test_features_do_not_change_when_the_future_does(ds):
    """Rewrite every event after the cutoff: labels move, feature rows must not."""
    labels = label_split(ds, CFG.reranker)
    ev = ds.events
    after = ev.ts > labels.cutoff
    rng = np.random.default_rng(1)
    future = replace(ev, item=np.where(after, rng.integers(0, ds.n_items, len(ev)), ev.item).astype(np.int32),
                     event=np.where(after, 4, ev.event).astype(np.uint8))
    labels2 = label_split(ds.with_events(future), CFG.reranker)
    assert labels2.cutoff == labels.cutoff
    members = np.arange(40)
    rows = build_rows(fit_first_stage(labels.features, CFG), CFG, members, labels)
    rows2 = build_rows(fit_first_stage(labels2.features, CFG), CFG, members, labels2)
    np.testing.assert_array_equal(rows.x, rows2.x)
    np.testing.assert_array_equal(rows.items, rows2.items)
    assert not np.array_equal(rows.y, rows2.y)


# --------------------------------------------------------------------------- training + ONNX


def test_trains_and_onnx_matches_lightgbm(trained):
    assert trained.onnx is not None, trained.meta.get("skipped")
    meta = trained.meta
    assert meta["feature_names"] == list(FEATURE_NAMES) and meta["feature_version"] == FEATURE_VERSION
    assert meta["onnx_max_abs_diff"] < 1e-4 and meta["trees"] == 20
    x = trained.rows["train"].x[:500]
    scorer = Reranker.from_manifest(trained.onnx, {"reranker": meta})
    np.testing.assert_allclose(scorer.score(x), trained.booster.predict(x), atol=1e-4)


def test_skips_cleanly_with_too_few_groups(ds):
    few = CFG.model_copy(update={"reranker": CFG.reranker.model_copy(update={"min_groups": 10_000})})
    result = train_reranker(ds, few)
    assert result.onnx is None and "min_groups" in result.meta["skipped"]
    off = CFG.model_copy(update={"reranker": CFG.reranker.model_copy(update={"enabled": False})})
    assert train_reranker(ds, off).meta == {"enabled": False}


def test_pools_are_what_a_slot_could_serve(ds):
    labels = label_split(ds, CFG.reranker)
    fs = fit_first_stage(labels.features, CFG)
    for m, c in PoolMaker(fs, CFG).pools(np.arange(30), 30):
        assert 0 < len(c) <= 30 and len(set(c.items.tolist())) == len(c)
        assert (ds.items.stock[c.items] != 0).all() and ds.items.on_shelf[c.items].all()  # slot filters
        assert not np.isin(c.items, fs.seen[m].indices).any()  # the member's own items are left out


def test_first_stage_searches_neighbours_of_recent_items_only_and_rows_do_not_change():
    """Pools and features look up neighbours of each member's RECENT newest items, nothing else: the
    first stage searches only those, and the rows are what neighbours of every item give."""
    rng = np.random.default_rng(3)  # members 0-9 touch ~25 items each, more than their RECENT 10
    events = [(f"m{m}", f"i{rng.integers(80)}", str(rng.choice(["view", "click", "cart"])),
               int(rng.integers(0, 30 * DAY))) for m in range(120) for _ in range(30 if m < 10 else 12)]
    long = make_dataset(events, n_items=80)
    labels = label_split(long, CFG.reranker)
    members = labels.of(np.arange(10))
    fs = fit_first_stage(labels.features, CFG, members=members)
    searched = np.flatnonzero((fs.arrays["neighbour_items"] >= 0).any(axis=1))
    touched = np.unique(fs.arrays["history_items"])
    assert 0 < len(searched) < len(touched)  # fewer than the members' items: the check means something
    ids, sims = cosine_neighbours(fs.arrays["item_factors"], CFG.neighbours.k)
    arrays = {**fs.arrays, "neighbour_items": ids, "neighbour_scores": sims}
    every = replace(fs, arrays=arrays, ctx=FeatureContext(fs.items, labels.features.members, arrays))
    got, want = build_rows(fs, CFG, members, labels), build_rows(every, CFG, members, labels)
    assert np.array_equal(got.items, want.items) and np.array_equal(got.groups, want.groups)
    assert np.array_equal(got.x, want.x, equal_nan=True)


def test_published_bundle_serves_the_reranker(ds, tmp_path):
    from training.pipeline import train

    path = train(ds, CFG, tmp_path)
    bundle = mb.load(path)
    assert bundle.manifest["reranker"]["onnx_max_abs_diff"] < 1e-4
    scorer = Reranker.from_bundle(bundle)
    ctx = FeatureContext.from_bundle(bundle)
    member = ctx.member_inputs(3, now=ds.now, vector=bundle.member_factors[3], recent=[(5, "cart", ds.now)])
    x = compute(ctx, member, Candidates.from_names([1, 2, 3, 4], ["als", "als", "popular", "similar_recent"]))
    assert scorer.score(x).shape == (4,) and sorted(scorer.rank(x).tolist()) == [0, 1, 2, 3]


def test_evaluate_reports_first_stage_and_rerank_on_the_same_members(ds):
    from training.evaluate import evaluate, fit_models
    from training.rerank_eval import score_rerank

    split = temporal(ds, 3)
    # 24 held-out members: the gate's figures are noisy here; its tolerance is wide to score the model
    cfg = CFG.model_copy(update={"reranker": CFG.reranker.model_copy(update={"gate_tolerance": 0.5})})
    assert {"als", "first_stage", "rerank"} <= set(evaluate(split, cfg, ks=(10,)))
    info: dict = {}
    model = train_reranker(split.train, cfg)
    als = fit_models(split, cfg, ("als",), start=model.warm_start)["als"]
    res = score_rerank(split, cfg, model, als, ks=(10,), info=info)
    assert set(res) == {"first_stage", "rerank"}
    assert res["first_stage"].keys() == res["rerank"].keys() and "ndcg@10" in res["rerank"]
    assert res["first_stage"]["members"] == res["rerank"]["members"] == len(np.unique(split.test_members))
    assert 0 <= info["pool"]["truth_in_pool"] <= 1
    # the same figures from forked workers, a few members each, as from this process alone
    import training.rerank_eval as rerank_eval

    chunk, rerank_eval.CHUNK = rerank_eval.CHUNK, 5
    try:
        forked: dict = {}
        assert score_rerank(split, cfg, model, als, ks=(10,), info=forked, workers=2) == res
    finally:
        rerank_eval.CHUNK = chunk
    assert forked["pool"] == {**info["pool"], "workers": 2} and info["pool"]["workers"] == 1


# --------------------------------------------------------------------------- scorer


def test_scorer_refuses_another_feature_list(onnx_model):
    onnx, _, _ = onnx_model
    swapped = list(FEATURE_NAMES)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(RerankError, match="feature list"):
        Reranker(onnx, swapped, FEATURE_VERSION)
    with pytest.raises(RerankError, match="feature list"):
        Reranker(onnx, FEATURE_NAMES, FEATURE_VERSION + 1)
    with pytest.raises(RerankError, match="feature_names"):
        Reranker.from_manifest(onnx, {"version": "x"})


def test_scorer_raises_a_catchable_error_on_a_broken_model(onnx_model):
    onnx, booster, x = onnx_model
    with pytest.raises(RerankError, match="cannot load"):
        Reranker(b"not an onnx model", FEATURE_NAMES, FEATURE_VERSION)
    with pytest.raises(RerankError):
        Reranker(onnx[: len(onnx) // 2], FEATURE_NAMES, FEATURE_VERSION)  # truncated file
    scorer = Reranker(onnx, FEATURE_NAMES, FEATURE_VERSION)
    with pytest.raises(RerankError, match="shaped"):
        scorer.score(x[:, :5])
    np.testing.assert_allclose(scorer.score(x), booster.predict(x), atol=1e-4)
    assert scorer.score(np.zeros((0, N_FEATURES), np.float32)).shape == (0,)


def test_lightgbm_is_imported_without_scikit_learn_and_leaves_it_importable():
    """`lightgbm()` keeps scikit-learn's import (0.8 s) out of training; sklearn still imports after."""
    code = ("import sys\nfrom training.reranker import lightgbm\nlgb = lightgbm()\n"
            "assert lgb is sys.modules['lightgbm']\nassert 'sklearn' not in sys.modules, 'sklearn imported'\n"
            "import sklearn\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
