"""The re-ranker's gate: it ships only when it ranks its held-out members no worse than its first
stage, and the bundle and `train`'s output say why, with both figures; labels follow the clock."""

from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError
from rich.console import Console

from service import model_bundle as mb
from service.bundle_manifest import RerankerSection, check_manifest
from tests.factories import DAY, make_dataset
from training import pipeline
from training.config import RerankerConfig, TrainConfig
from training.progress import Steps
from training.rerank_gate import judge
from training.reranker import FirstHalf, Rows, finish_reranker, label_split, start_reranker, train_reranker

CFG = TrainConfig.model_validate({
    "als": {"factors": 8, "iterations": 3}, "neighbours": {"k": 10},
    "reranker": {"trees": 20, "leaves": 7, "min_data_in_leaf": 5, "candidates": 30, "min_groups": 20},
})


@pytest.fixture(scope="module")
def ds():
    return make_dataset(members=160, n_items=80, seed=4)


def poisoned(half: FirstHalf) -> FirstHalf:
    """The training members' labels shuffled across them (each member's labels become other,
    mostly other-category members' items); the held-out members' labels stay true. A re-ranker
    learnt from these is truly worse than its first stage on the held-out members."""
    assert half.labels is not None and half.members is not None and half.valid_mask is not None
    labels = half.labels
    trained = np.isin(labels.member, half.members[~half.valid_mask])
    item = labels.item.copy()
    item[trained] = np.random.default_rng(0).permutation(item[trained])
    return replace(half, labels=replace(labels, item=item))


def run(ds, config, poison: bool):
    half = start_reranker(ds, config, Steps(quiet=True))
    return finish_reranker(poisoned(half) if poison else half, config, Steps(quiet=True))


def test_ships_a_re_ranker_that_beats_its_first_stage(ds):
    result = train_reranker(ds, CFG)
    valid = result.meta["valid"]
    assert result.onnx is not None and "skipped" not in result.meta
    assert valid["shipped"] and valid["rerank_ndcg@10"] > valid["first_stage_ndcg@10"]
    assert valid["labelled_groups"] >= 20 and valid["reason"].startswith("the gate passed")


def test_refuses_a_re_ranker_trained_on_shuffled_labels(ds):
    true, bad = run(ds, CFG, poison=False), run(ds, CFG, poison=True)
    v = bad.meta["valid"]
    assert bad.onnx is None and bad.meta["skipped"] == v["reason"] and not v["shipped"]
    assert v["rerank_ndcg@10"] < v["first_stage_ndcg@10"] * (1 - CFG.reranker.gate_tolerance)
    # the same held-out members and first stage as the true model: only the re-ranked figure differs
    assert v["first_stage_ndcg@10"] == true.meta["valid"]["first_stage_ndcg@10"]
    assert v["rerank_ndcg@10"] < true.meta["valid"]["rerank_ndcg@10"]
    for figure in (v["rerank_ndcg@10"], v["first_stage_ndcg@10"], v["rerank_hr@10"], v["first_stage_hr@10"]):
        assert f"{figure:.4f}" in v["reason"]
    assert "the gate refused" in v["reason"] and "gate_tolerance" in v["reason"]


def test_tolerance_decides_and_ties_keep_the_first_stage_order():
    rows = Rows(np.zeros((6, 1), np.float32), np.array([5, 0, 0, 2, 0, 0]), np.array([3, 3]),
                np.array([0, 1]), np.arange(6))
    same = judge(rows, np.zeros(6), tolerance=0.0)  # all tied: the first stage's order
    assert same.shipped and same.first_ndcg == same.rerank_ndcg == 1.0 and same.diff_ndcg == 0
    reversed_ = judge(rows, np.arange(6.0), tolerance=0.0)  # each labelled item from first to last
    assert reversed_.labelled_groups == 2 and reversed_.first_hr == reversed_.rerank_hr == 1.0
    assert reversed_.rerank_ndcg == 0.5 and not reversed_.shipped
    assert judge(rows, np.arange(6.0), tolerance=0.5).shipped  # 0.5 >= 1.0 x (1 - 0.5)
    nothing = judge(replace(rows, y=np.zeros(6, np.int64)), np.zeros(6), tolerance=0.0)
    assert not nothing.shipped and "nothing to compare" in nothing.reason


def test_train_output_and_manifest_say_why_with_both_figures(ds, monkeypatch, tmp_path):
    def lines(config):
        console = Console(record=True, width=400)
        bundle = pipeline.build_bundle(ds, config, Steps(console))
        RerankerSection.model_validate(bundle.manifest["reranker"])  # as publish checks it
        return bundle, console.export_text()

    shipped, out = lines(CFG)
    v = shipped.manifest["reranker"]["valid"]
    assert shipped.reranker_onnx is not None and v["shipped"]
    assert f"re-ranker shipped: {v['reason']}" in out and f"{v['rerank_ndcg@10']:.4f}" in out

    monkeypatch.setattr(pipeline, "start_reranker", lambda *a: poisoned(start_reranker(*a)))
    refused, out = lines(CFG)
    v = refused.manifest["reranker"]["valid"]
    assert refused.reranker_onnx is None and v["shipped"] is False
    assert refused.manifest["reranker"]["skipped"] == v["reason"]
    assert f"re-ranker skipped: {v['reason']}" in out
    assert f"re-ranked NDCG@10 {v['rerank_ndcg@10']:.4f} vs first stage {v['first_stage_ndcg@10']:.4f}" in out
    path = pipeline.publish(refused, tmp_path, Steps(quiet=True))
    assert mb.read_manifest(path)["reranker"]["valid"]["shipped"] is False


def test_manifest_types_the_gate_and_reads_bundles_from_before_it():
    base = {"schema_version": 1, "version": "v1", "created_at": "now", "files": {}}
    with pytest.raises(mb.BundleError):  # no files at all; the reranker section is typed beside
        check_manifest(base, "m")
    files = {n: {"sha256": "0" * 64, "bytes": 1} for n in
             [f"{a}.npy" for a, (_, need) in mb.ARRAYS.items() if need] + [mb.ITEMS_TABLE, mb.MEMBERS_TABLE]}
    older = {**base, "files": files,
             "reranker": {"valid": {"groups": 3, "first_stage_ndcg@10": 0.1, "rerank_ndcg@10": 0.2}}}
    assert check_manifest(older, "m").reranker.valid.shipped is None  # trained before the gate
    wrong = {**older, "reranker": {"valid": {"groups": 3, "tolerance": 2.0}}}
    with pytest.raises(mb.BundleError, match="reranker.valid.tolerance"):
        check_manifest(wrong, "m")


def test_gate_config_is_validated():
    assert RerankerConfig().gate_share == 0.2
    for bad in ({"gate_share": 0.9}, {"gate_share": 0}, {"gate_tolerance": -0.1}, {"gate_tolerance": 1}):
        with pytest.raises(ValidationError):
            RerankerConfig.model_validate(bad)


# --------------------------------------------------------------------------- labels and the clock


def test_without_a_clock_labels_are_random_items_never_the_files_last():
    rng = np.random.default_rng(3)
    # each member's file-order last event is item i0: a "last" split would label i0 for everyone
    events = [(f"m{m}", f"i{int(rng.integers(1, 40))}", "view", 0) for m in range(60) for _ in range(6)]
    events += [(f"m{m}", "i0", "purchase", 0) for m in range(60)]
    flat = make_dataset(events, n_items=40)
    for asked in ("last", "auto", "time"):
        cfg = CFG.reranker.model_copy(update={"label_split": asked, "exclude_seen": False})
        labels = label_split(flat, cfg)
        assert labels.split == "random" and labels.cutoff is None and labels.note is not None
        assert len(labels.member) == 60 and (labels.item != 0).mean() > 0.5


def test_positions_hold_out_each_members_last_event_not_a_time_cutoff():
    ordered = make_dataset([(f"m{m}", f"i{(m + k) % 30}", "view", k) for m in range(40) for k in range(5)],
                           n_items=30)
    for asked in ("auto", "time"):
        labels = label_split(ordered, CFG.reranker.model_copy(update={"label_split": asked}))
        assert labels.split == "last" and labels.note is not None and "positions" in labels.note
    timed = make_dataset([(f"m{m}", f"i{(m + k) % 30}", "view", k * DAY)
                          for m in range(40) for k in range(5)], n_items=30)
    assert label_split(timed, CFG.reranker.model_copy(update={"min_groups": 10})).split == "time"


def test_evaluate_notes_a_refusal_with_both_figures(ds, monkeypatch):
    import training.reranker as reranker
    from training.dataset import temporal
    from training.evaluate import evaluate

    start = reranker.start_reranker
    monkeypatch.setattr(reranker, "start_reranker", lambda *a: poisoned(start(*a)))
    notes: list[str] = []
    results = evaluate(temporal(ds, 3), CFG, ks=(10,), notes=notes)
    assert "rerank" not in results and "als" in results
    (note,) = [n for n in notes if "re-ranker" in n]
    assert "the gate refused: re-ranked NDCG@10" in note and "vs first stage" in note
