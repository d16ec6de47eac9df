"""`mallrec train --gate`: a worse bundle is refused (exit 3, CURRENT unchanged), one as good is
published with both figures in its manifest; the rule, the holdout, and unknown ids as misses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import typer
from typer.testing import CliRunner, Result

from service import model_bundle as mb
from service.cli import app as cli_app
from service.errors import MallrecError
from service.model_bundle import Bundle, ItemTable, MemberTable
from service.models_cli import register
from tests.factories import DAY, make_dataset
from training.dataset import Split
from training.gate import GATE_REFUSED_EXIT, decide, gate_split, measure
from training.synth import generate

NOW = 1_780_000_000
BAD_CONFIG = "[als]\nfactors = 2\niterations = 1\nregularization = 1000\n"  # near-random factors


def train(*args: str) -> Result:
    return CliRunner().invoke(cli_app, ["train", *args])


@pytest.fixture(scope="module")
def mall(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic mall, its events before the last day (``pre``), and that day's pairs (``pairs``)."""
    out = tmp_path_factory.mktemp("gate-mall")
    paths = generate(out, members=400, items=800, events=20_000, seed=3, now=NOW)
    events = pacsv.read_csv(paths["events"])
    cut = pc.max(events["ts"]).as_py() - DAY
    pacsv.write_csv(events.filter(pc.less_equal(events["ts"], cut)), out / "pre.csv")
    last = events.filter(pc.greater(events["ts"], cut)).select(["member_id", "item_id"])
    pacsv.write_csv(last, out / "pairs.csv")
    (out / "bad.toml").write_text(BAD_CONFIG)
    return {**paths, "pre": out / "pre.csv", "pairs": out / "pairs.csv", "bad": out / "bad.toml"}


def inputs(mall: dict[str, Path], events: str = "events") -> list[str]:
    return ["--events", str(mall[events]), "--items", str(mall["items"]), "--members", str(mall["members"])]


@pytest.fixture(scope="module")
def live_models(mall: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A live bundle trained on the events before the last day: what the gate trains the new one on."""
    out = tmp_path_factory.mktemp("gate-live") / "models"
    result = train(*inputs(mall, "pre"), "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def models(live_models: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(live_models, tmp_path / "models"))


def test_with_nothing_live_the_gate_passes_and_says_so(mall: dict[str, Path], tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = train(*inputs(mall), "--out", str(models), "--gate")
    assert result.exit_code == 0, result.output
    assert "no live bundle to compare with: the gate passes" in " ".join(result.output.split())
    gate = mb.read_manifest(models / "versions" / mb.current_version(models))["gate"]
    assert gate["passed"] and gate["live"] is None and gate["live_version"] is None
    assert 0 < gate["new"]["hr@10"] <= 1 and gate["new"]["members"] > 50


def test_a_worse_bundle_is_refused_and_nothing_is_published(mall: dict[str, Path], models: Path) -> None:
    live = mb.current_version(models)
    before = sorted(p.name for p in (models / "versions").iterdir())
    result = train(*inputs(mall), "--out", str(models), "--gate", "--config", str(mall["bad"]))
    assert result.exit_code == GATE_REFUSED_EXIT, result.output
    text = " ".join(result.output.split())
    assert "gate refused" in text and "worse than the live bundle's by more than 2.0%" in text
    assert "hr@10 new" in text and "vs live" in text and f"{live} stays live" in text
    assert mb.current_version(models) == live
    assert sorted(p.name for p in (models / "versions").iterdir()) == before  # nothing half-written either


def test_a_bundle_as_good_is_published_with_both_figures(mall: dict[str, Path], models: Path) -> None:
    live = mb.current_version(models)
    result = train(*inputs(mall), "--out", str(models), "--gate")
    assert result.exit_code == 0, result.output
    new = mb.current_version(models)
    assert new != live and "gate passed against live" in " ".join(result.output.split())
    manifest = mb.read_manifest(models / "versions" / new)
    gate = manifest["gate"]
    assert gate["passed"] and gate["live_version"] == live and gate["tolerance"] == 0.02
    assert gate["new"]["hr@10"] >= gate["live"]["hr@10"] * 0.98 and gate["live"]["hr@10"] > 0
    assert gate["holdout"]["kind"] == "last-days" and gate["holdout"]["pairs"] > 100
    # the published bundle is the measured one: trained on the events before the holdout's cut
    assert manifest["data_stats"]["ts_max"] <= gate["holdout"]["cut_ts"]
    assert manifest["data_stats"]["events_to"] <= gate["holdout"]["cut"]

    app = typer.Typer()
    register(app)
    listed = json.loads(CliRunner().invoke(app, ["models", "list", "--models", str(models), "--json"]).output)
    assert listed[0]["version"] == new and listed[0]["live"]
    assert listed[0]["metrics"]["gate"]["live"] == gate["live"]


def test_a_holdout_file_trains_on_every_event(mall: dict[str, Path], models: Path) -> None:
    result = train(*inputs(mall, "pre"), "--out", str(models), "--gate", "--holdout", str(mall["pairs"]),
                   "--config", str(mall["bad"]))
    assert result.exit_code == GATE_REFUSED_EXIT, result.output
    good = train(*inputs(mall, "pre"), "--out", str(models), "--gate", "--holdout", str(mall["pairs"]))
    assert good.exit_code == 0, good.output
    manifest = mb.read_manifest(models / "versions" / mb.current_version(models))
    holdout = manifest["gate"]["holdout"]
    assert holdout["kind"] == "file" and holdout["file"] == str(mall["pairs"])
    assert manifest["data_stats"]["events"] == pacsv.read_csv(mall["pre"]).num_rows


def test_gate_flags_need_gate(mall: dict[str, Path], tmp_path: Path) -> None:
    result = train(*inputs(mall), "--out", str(tmp_path), "--gate-days", "2")
    assert isinstance(result.exception, MallrecError) and "add --gate" in str(result.exception)


# --------------------------------------------------------------------------- the rule


def test_the_rule_is_relative_to_the_live_figures() -> None:
    live = {"hr@10": 0.2, "ndcg@10": 0.1}
    assert decide({"hr@10": 0.196, "ndcg@10": 0.098}, live, 0.02)[0]  # exactly 2% worse: passes
    passed, reason = decide({"hr@10": 0.1959, "ndcg@10": 0.2}, live, 0.02)
    assert not passed and reason.startswith("hr@10 worse") and "hr@10 new 0.1959 vs live 0.2000" in reason
    passed, reason = decide({"hr@10": 0.3, "ndcg@10": 0.05}, live, 0.02)
    assert not passed and reason.startswith("ndcg@10 worse")
    assert decide({"hr@10": 0.0, "ndcg@10": 0.0}, {"hr@10": 0.0, "ndcg@10": 0.0}, 0.0)[0]
    assert decide({"hr@10": 0.0, "ndcg@10": 0.0}, None, 0.02) == (
        True, "no live bundle to compare with: the gate passes")


def _bundle(member_ids: list[str], item_ids: list[str], member_f: np.ndarray, item_f: np.ndarray,
            popularity: np.ndarray) -> Bundle:
    n = len(item_ids)
    items = ItemTable(np.array(item_ids), np.full(n, ""), np.full(n, ""), np.full(n, np.nan),
                      np.full(n, -1), np.ones(n, bool), np.full(n, -1), np.full(n, ""))
    members = MemberTable(np.array(member_ids), np.full(len(member_ids), ""), np.zeros(len(member_ids)))
    arrays = {"member_factors": member_f.astype(np.float32), "item_factors": item_f.astype(np.float32),
              "popularity_global": popularity.astype(np.float32)}
    return Bundle(manifest={"version": "t"}, items=items, members=members, arrays=arrays)


def test_members_and_items_the_bundle_does_not_know_are_misses() -> None:
    ds = make_dataset([("m0", "i0", "view", DAY), ("m1", "i0", "view", DAY), ("m2", "i0", "view", DAY),
                       ("m3", "i0", "view", DAY)], n_items=8)
    # the bundle knows m0, m1 and m3 (m3 without a taste vector), items i0..i5 and one ds lacks,
    # in an order of its own
    item_f = np.zeros((7, 2))
    item_f[1] = [1, 0]  # i1: m0's favourite
    item_f[2] = [0, 1]  # i2: m1's favourite
    bundle = _bundle(["m3", "m1", "m0"], ["i0", "i1", "i2", "i3", "i4", "i5", "zz"],
                     np.array([[0, 0], [0, 1], [1, 0]]), item_f, np.array([0, 0, 0, 9, 0, 0, 0]))
    # truth: m0 -> i1 (hit), m1 -> i7 (unknown item: miss), m2 -> i1 (unknown member: miss),
    # m3 -> i3 (no vector: ranked by popularity, i3 first: hit)
    split = Split(ds, np.array([0, 1, 2, 3], dtype=np.int32), np.array([1, 7, 1, 3], dtype=np.int32))
    assert measure(bundle, split, "live") == {"hr@10": 0.5, "ndcg@10": 0.5, "members": 4}


# --------------------------------------------------------------------------- the holdout


def _pairs(split: Split) -> list[tuple[int, int]]:
    return sorted(zip(split.test_members.tolist(), split.test_items.tolist(), strict=True))


def test_the_holdout_starts_after_the_live_bundles_newest_event() -> None:
    ds = make_dataset([("m0", "i0", "view", 1 * DAY), ("m0", "i1", "view", 9 * DAY),
                       ("m0", "i2", "view", 9 * DAY + 10), ("m1", "i3", "view", 1 * DAY),
                       ("m1", "i4", "view", 10 * DAY)])
    notes: list[str] = []
    split, info = gate_split(ds, None, 2.0, notes)  # the last two days: 8d .. 10d
    assert _pairs(split) == [(0, 1), (0, 2), (1, 4)]
    assert not notes and info["pairs"] == 3 and info["train_events"] == 2
    split, info = gate_split(ds, None, 2.0, notes, live_seen_to=9 * DAY)  # the live bundle saw 9d
    assert _pairs(split) == [(0, 2), (1, 4)]
    assert info["cut_ts"] == 9 * DAY and "the live bundle was trained on the events before it" in notes[0]
    with pytest.raises(MallrecError, match="no event it has not seen"):
        gate_split(ds, None, 2.0, [], live_seen_to=10 * DAY)


def test_no_clock_or_no_training_events_is_said_plainly() -> None:
    flat = make_dataset([("m0", "i0", "view", 0), ("m0", "i1", "view", 0)])
    with pytest.raises(MallrecError, match="no usable clock.*--holdout FILE"):
        gate_split(flat, None, 1.0, [])
    recent = make_dataset([("m0", "i0", "view", DAY), ("m0", "i1", "view", DAY + 60)])
    with pytest.raises(MallrecError, match="nothing left to train on"):
        gate_split(recent, None, 1.0, [])
