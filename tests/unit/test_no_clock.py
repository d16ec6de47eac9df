"""Data without a usable clock (every event at ts = 0, or only two distinct times) trains, tunes and
evaluates: time decay, trending and the re-ranker's time split fall back, each said once."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from service import model_bundle as mb
from service.cli import app
from tests.factories import make_dataset
from training.config import TrainConfig
from training.dataset import Dataset, has_clock, leave_random_out
from training.evaluate import evaluate
from training.pipeline import train
from training.popularity import trending_scores
from training.progress import Steps
from training.reranker import _split, label_split

T0 = 1_760_000_000
SMALL = {"als": {"factors": 8, "iterations": 3}, "neighbours": {"k": 10},
         "reranker": {"trees": 20, "leaves": 7, "min_data_in_leaf": 5, "candidates": 30, "min_groups": 20,
                      "gate_tolerance": 0.5}}  # a few dozen held-out members: the gate's figures are noise
CFG = TrainConfig.model_validate(SMALL)
DECAY, TRENDING, LABELS = "no clock: every event has the same time", "trending is plain popularity", \
    "label split: every event has the same time"


def with_times(ds: Dataset, ts: np.ndarray) -> Dataset:
    from dataclasses import replace

    return ds.with_events(replace(ds.events, ts=np.asarray(ts, dtype=np.int64)))


def flat(seed: int = 4) -> Dataset:
    ds = make_dataset(members=160, n_items=80, seed=seed)
    return with_times(ds, np.zeros(len(ds.events)))


def two_times(seed: int = 4) -> Dataset:
    """Each member's first three quarters of events at T0, the rest an hour later."""
    ds = make_dataset(members=160, n_items=80, seed=seed)
    ev = ds.events
    rank = np.zeros(len(ev), dtype=np.int64)
    for m in np.unique(ev.member):
        rows = np.flatnonzero(ev.member == m)
        rank[rows] = np.arange(len(rows)) * 4 // len(rows)
    return with_times(ds, np.where(rank < 3, T0, T0 + 3600))


def recorder() -> tuple[Steps, io.StringIO]:
    text = io.StringIO()
    return Steps(Console(file=text, width=400)), text


@pytest.fixture(scope="module")
def flat_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[mb.Bundle, str]:
    steps, text = recorder()
    models = tmp_path_factory.mktemp("flat-models")
    train(flat(), CFG, models, steps=steps)
    return mb.load(models), text.getvalue()


def test_training_without_a_clock_ships_a_reranker_and_says_each_fallback_once(
        flat_bundle: tuple[mb.Bundle, str]) -> None:
    bundle, said = flat_bundle
    assert bundle.reranker_onnx is not None
    meta = bundle.manifest["reranker"]
    assert meta["label_split"] == "random" and meta["cutoff"] is None and LABELS in meta["label_split_note"]
    for line in (DECAY, TRENDING, LABELS):
        assert said.count(line) == 1, said
    weighting = bundle.manifest["hyperparameters"]["weighting"]
    assert weighting["half_life"] is None and weighting["member_half_life"] is None  # nothing to decay
    assert bundle.manifest["hyperparameters"]["popularity"]["half_life"] is None
    assert len(bundle.manifest["clock_fallbacks"]) == 2
    trending, popular = bundle.popularity_trending, bundle.popularity_global
    assert np.array_equal(np.argsort(-trending, kind="stable"), np.argsort(-popular, kind="stable"))


def test_two_distinct_times_split_by_time_and_trending_falls_back(tmp_path: Path) -> None:
    steps, text = recorder()
    ds = two_times()
    assert has_clock(ds.events)
    train(ds, CFG, tmp_path, steps=steps)
    bundle = mb.load(tmp_path)
    said = text.getvalue()
    assert bundle.reranker_onnx is not None and bundle.manifest["reranker"]["label_split"] == "time"
    assert bundle.manifest["reranker"]["cutoff"] < T0 + 3600
    assert said.count(TRENDING) == 1 and DECAY not in said and "label split:" not in said
    assert bundle.manifest["hyperparameters"]["weighting"]["half_life"] == CFG.weighting.half_life


@pytest.mark.parametrize("make", [flat, two_times], ids=["ts=0", "two times"])
def test_evaluate_scores_the_reranker(make) -> None:  # type: ignore[no-untyped-def]
    steps, text = recorder()
    ds = make()
    results = evaluate(leave_random_out(ds, seed=1), CFG, ks=(10,), steps=steps, notes=[])
    assert {"als", "trending", "first_stage", "rerank"} <= set(results)
    assert text.getvalue().count(TRENDING) == 1


def write_files(ds: Dataset, folder: Path) -> dict[str, Path]:
    """events.csv without each member's held-out item, holdout.csv with it, items.csv."""
    split = leave_random_out(ds, seed=2)
    ev, train_ev = ds.events, split.train.events
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{ev.member_ids[m]},{ev.item_ids[i]},{mb.EVENT_TYPES[e]},{t}"
            for m, i, e, t in zip(train_ev.member, train_ev.item, train_ev.event, train_ev.ts, strict=True)]
    (folder / "events.csv").write_text("member_id,item_id,event,ts\n" + "\n".join(rows) + "\n")
    pairs = [f"{ev.member_ids[m]},{ev.item_ids[i]}"
             for m, i in zip(split.test_members, split.test_items, strict=True)]
    (folder / "holdout.csv").write_text("member_id,item_id\n" + "\n".join(pairs) + "\n")
    it = ds.items
    items = [f"{it.item_id[k]},{it.category[k]},{it.brand[k]},,,,," for k in range(len(it))]
    (folder / "items.csv").write_text("item_id,category,brand,price,stock,on_shelf,launched_at,tags\n"
                                      + "\n".join(items) + "\n")
    (folder / "config.toml").write_text(CFG.to_toml())
    return {name: folder / f"{name}.{'toml' if name == 'config' else 'csv'}"
            for name in ("events", "holdout", "items", "config")}


def test_mallrec_evaluate_on_ts_zero_completes(tmp_path: Path) -> None:
    f = write_files(flat(), tmp_path)
    args = ["evaluate", "--events", str(f["events"]), "--items", str(f["items"]),
            "--holdout", str(f["holdout"]), "--config", str(f["config"]), "--k", "10"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "rerank" in result.output and "re-ranker not evaluated" not in result.output
    for line in (DECAY, TRENDING, LABELS):
        assert result.output.count(line) == 1, result.output


def test_tune_without_a_clock_validates_on_random_items_and_writes_auto(tmp_path: Path) -> None:
    from training.tune import tune

    steps, text = recorder()
    result = tune(flat(), TrainConfig.model_validate({"als": {"factors": 8, "iterations": 3}}),
                  trials=3, minutes=1, steps=steps)
    said = text.getvalue()
    assert said.count("clock: none") == 1 and "random 20% of each member's items" in said
    assert result.validation["split"] == "random 20% of each member's items (seed 0)"
    best = result.best_config
    assert best.weighting.half_life is None and all(t.params["half_life"] is None for t in result.trials)
    assert best.reranker.label_split == "auto" and 'label_split = "auto"' in best.to_toml()
    assert "random 20% of each member's items (seed 0) of the given events" in result.summary()


def test_the_default_label_split_is_auto() -> None:
    assert TrainConfig().reranker.label_split == "auto"


@pytest.mark.parametrize("asked", ["time", "last", "auto"])
def test_any_split_asked_falls_back_to_random_items_without_a_clock(asked: str) -> None:
    ds = flat()
    labels = label_split(ds, CFG.reranker.model_copy(update={"label_split": asked}))
    assert labels.split == "random" and labels.note is not None and f"label_split = {asked!r}" in labels.note
    assert len(labels.member) >= CFG.reranker.min_groups
    assert len(np.unique(labels.member)) == len(labels.member)  # one item per member
    seen = {(int(m), int(i)) for m, i in zip(labels.features.events.member, labels.features.events.item,
                                              strict=True)}
    assert not any((int(m), int(i)) in seen for m, i in zip(labels.member, labels.item, strict=True))
    again = label_split(ds, CFG.reranker.model_copy(update={"label_split": asked}))
    assert np.array_equal(labels.item, again.item)  # seeded
    other = label_split(ds, CFG.reranker.model_copy(update={"label_split": asked, "seed": 7}))
    assert not np.array_equal(labels.item, other.item)


def test_random_asked_for_says_nothing() -> None:
    labels = label_split(flat(), CFG.reranker.model_copy(update={"label_split": "random"}))
    assert labels.split == "random" and labels.note is None


def test_a_time_split_that_labels_nothing_is_empty_not_an_index_error() -> None:
    labels = _split(flat(), CFG.reranker, "time")
    assert len(labels.member) == 0 and len(labels.features.events) == len(flat().events)


def test_auto_says_when_it_falls_back_from_time_to_last() -> None:
    ds = make_dataset(members=160, n_items=80, seed=4)
    late = np.zeros(len(ds.events), dtype=bool)
    late[np.flatnonzero(ds.events.member < 5)[::4]] = True  # only 5 members act after the cutoff
    ds = with_times(ds, np.where(late, T0 + 86400, T0))
    labels = label_split(ds, CFG.reranker)
    assert labels.split == "last" and labels.note is not None and "fewer than min_groups=20" in labels.note


def test_trending_without_earlier_events_is_the_weighted_volume() -> None:
    ds = flat()
    weights = np.asarray(CFG.weighting.events.as_array())[ds.events.event]
    want = np.bincount(ds.events.item, weights=weights, minlength=ds.n_items)
    np.testing.assert_allclose(trending_scores(ds, CFG.weighting, CFG.popularity), want, rtol=1e-6)


def test_leave_random_out_holds_out_one_item_per_member_with_two_or_more() -> None:
    ds = flat()
    split = leave_random_out(ds, seed=3)
    assert len(np.unique(split.test_members)) == len(split.test_members) > 100
    train_pairs = set(zip(split.train.events.member.tolist(), split.train.events.item.tolist(), strict=True))
    assert not any(p in train_pairs for p in zip(split.test_members.tolist(), split.test_items.tolist(),
                                                  strict=True))


def test_evaluate_without_a_holdout_holds_out_random_items_not_the_file_order(tmp_path: Path) -> None:
    f = write_files(flat(), tmp_path)
    args = ["evaluate", "--events", str(f["events"]), "--items", str(f["items"]),
            "--config", str(f["config"]), "--k", "10"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "holds out a random item per member" in result.output
