"""`evaluate` and `train` say the events' clock in one line and act on it; `--split random` holds out
a seeded share; bad split options fail with one clear error."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from service import model_bundle as mb
from service.cli import app
from service.errors import MallrecError
from tests.factories import make_dataset
from tests.unit.test_clock import positions
from training.config import TrainConfig
from training.dataset import Dataset, fit_clock, leave_random_share, read_clock

SMALL = {"als": {"factors": 8, "iterations": 3}, "neighbours": {"k": 10}, "reranker": {"enabled": False}}
NONE, ORDER, TIME = "clock: none", "clock: order only", "clock: time"  # each line's start


def with_times(ds: Dataset, ts: np.ndarray) -> Dataset:
    return ds.with_events(replace(ds.events, ts=np.asarray(ts, dtype=np.int64)))


def dataset(kind: str) -> Dataset:
    ds = make_dataset(members=120, n_items=60, seed=5)
    if kind == "none":
        return with_times(ds, np.zeros(len(ds.events)))
    if kind == "order":
        return with_times(ds, positions(ds))
    return ds


def write(ds: Dataset, folder: Path) -> dict[str, Path]:
    ev, it = ds.events, ds.items
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{ev.member_ids[m]},{ev.item_ids[i]},{mb.EVENT_TYPES[e]},{t}"
            for m, i, e, t in zip(ev.member, ev.item, ev.event, ev.ts, strict=True)]
    (folder / "events.csv").write_text("member_id,item_id,event,ts\n" + "\n".join(rows) + "\n")
    items = [f"{it.item_id[k]},{it.category[k]},{it.brand[k]},,,,," for k in range(len(it))]
    (folder / "items.csv").write_text("item_id,category,brand,price,stock,on_shelf,launched_at,tags\n"
                                      + "\n".join(items) + "\n")
    (folder / "config.toml").write_text(TrainConfig.model_validate(SMALL).to_toml())
    return {"events": folder / "events.csv", "items": folder / "items.csv", "config": folder / "config.toml"}


def clock_lines(output: str) -> list[str]:
    """The start of each line that says the clock."""
    return [line.split(" (")[0] for line in output.splitlines() if line.startswith("clock: ")]


def run_evaluate(files: dict[str, Path], *extra: str) -> tuple[int, str, BaseException | None]:
    args = ["evaluate", "--events", str(files["events"]), "--items", str(files["items"]),
            "--config", str(files["config"]), "--k", "10", *extra]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    return result.exit_code, result.output, result.exception


@pytest.mark.parametrize(("kind", "line", "said", "not_said"), [
    ("none", NONE, ["holds out a random item per member", "time decay is off"], ["global time decay"]),
    ("order", ORDER, ["global time decay is off", "ts are positions"], ["holds out a random item"]),
    ("time", TIME, [], ["holds out a random item", "time decay is off", "ts are positions"]),
])
def test_evaluate_says_the_clock_once_and_acts_on_it(tmp_path: Path, kind: str, line: str,
                                                     said: list[str], not_said: list[str]) -> None:
    code, output, exc = run_evaluate(write(dataset(kind), tmp_path), "--json", str(tmp_path / "m.json"))
    assert code == 0, (output, exc)
    assert clock_lines(output) == [line] and line in output
    for text in said:
        assert output.count(text) == 1, (text, output)
    for text in not_said:
        assert text not in output
    payload = json.loads((tmp_path / "m.json").read_text())
    assert payload["clock"] == kind
    seconds = payload["seconds"]
    assert set(seconds["score"]) == set(payload["models"]) and seconds["score_total"] >= 0
    assert "ALS" in seconds["fit"] and "scoring:" in output


def test_train_says_the_clock_once(tmp_path: Path) -> None:
    files = write(dataset("order"), tmp_path / "data")
    args = ["train", "--events", str(files["events"]), "--items", str(files["items"]),
            "--config", str(files["config"]), "--out", str(tmp_path / "models")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, (result.output, result.exception)
    assert clock_lines(result.output) == [ORDER]
    weighting = mb.load(tmp_path / "models").manifest["hyperparameters"]["weighting"]
    assert weighting["half_life"] is None  # global decay on positions is off


def test_order_clock_keeps_member_decay_and_drops_global_decay() -> None:
    ds = dataset("order")
    member = TrainConfig.model_validate({"weighting": {"decay_from": "member", "half_life": "5s"}})
    cfg, notes = fit_clock(ds, member)
    assert cfg.weighting.half_life == 5 and cfg.popularity.half_life is None and "decay" in notes
    cfg, notes = fit_clock(ds, TrainConfig())
    assert cfg.weighting.half_life is None and cfg.weighting.member_half_life is None
    assert cfg.popularity.trending_window > ds.events.ts.max() - ds.events.ts.min()  # trending = popularity
    assert "trending" in notes
    cfg, notes = fit_clock(dataset("time"), TrainConfig())
    assert cfg.weighting.half_life == TrainConfig().weighting.half_life and "decay" not in notes
    # a random share of order data no longer has runs of positions: the whole data's clock decides
    train = leave_random_share(ds, 0.3, seed=1).train
    assert fit_clock(train, TrainConfig(), read_clock(ds.events))[0].weighting.half_life is None


def test_split_random_holds_out_the_seeded_share(tmp_path: Path) -> None:
    ds = dataset("none")
    files = write(ds, tmp_path)
    code, output, exc = run_evaluate(files, "--split", "random", "--test-share", "0.3", "--seed", "4",
                                     "--json", str(tmp_path / "m.json"))
    assert code == 0, (output, exc)
    pairs = len(leave_random_share(ds, 0.3, seed=4).test_members)
    assert f"split: {pairs:,} held-out pairs" in output
    assert "holds out a random item" not in output
    payload = json.loads((tmp_path / "m.json").read_text())
    assert payload["split"] == "random" and payload["test_share"] == 0.3 and payload["seed"] == 4


@pytest.mark.parametrize(("kind", "extra", "message"), [
    ("none", ["--split", "random", "--test-share", "1.5"], "between 0 and 1"),
    ("none", ["--split", "random", "--test-share", "0"], "between 0 and 1"),
    ("none", ["--test-share", "0.2"], "--test-share applies to --split random"),
    ("none", ["--split", "temporal"], "--split temporal needs event times"),
    ("order", ["--split", "temporal"], "--split temporal needs event times"),
])
def test_bad_split_options_fail_with_one_clear_error(tmp_path: Path, kind: str, extra: list[str],
                                                     message: str) -> None:
    code, output, exc = run_evaluate(write(dataset(kind), tmp_path), *extra)
    assert code != 0 and isinstance(exc, MallrecError) and message in str(exc), (output, exc)
