"""`mallrec simulate`: a small run through the real server (2 days, a nightly retrain) leaves a log
with served and click records, a summary whose CTRs follow from its counts, and a new model on day 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest
import typer
from typer.testing import CliRunner

from service.errors import MallrecError
from service.eventlog.schema import read_log
from training.simulate import DAY, SLOTS, SimulateError
from training.simulate_cli import register
from training.simulate_world import World
from training.synth import hidden_tastes

pytestmark = pytest.mark.e2e
COUNT_KEYS = ("impressions", "clicks", "purchases")


def cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)
    register(app)

    @app.callback()
    def _root() -> None:  # a group, so the command is invoked by name as under `mallrec`
        pass

    return app


def simulate(*args: str) -> Any:
    return CliRunner().invoke(cli(), ["simulate", *args])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("sim") / "run"
    result = simulate("--members", "200", "--days", "2", "--retrain", "nightly", "--seed", "3",
                      "--out", str(out))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, json.loads((out / "summary.json").read_text()), result.output


def test_prints_the_tables_and_says_what_it_is(run):
    _, summary, output = run
    for title in ("per day", "per slot", "per arm", "day 1/2", "day 2/2", "night 1"):
        assert title in output
    assert "not an accuracy claim" in output and "not an accuracy claim" in summary["note"]


def test_summary_shape(run):
    _, s, _ = run
    assert set(s) >= {"note", "config", "totals", "days", "slots", "arms", "cells", "log", "server"}
    assert s["config"]["members"] == 200 and s["config"]["retrain"] == "nightly"
    assert [d["day"] for d in s["days"]] == [1, 2]
    assert set(s["slots"]) == set(SLOTS)
    assert [(a["experiment"], a["arm"]) for a in s["arms"]] == [("", "")]  # no experiment in the rules
    for d in s["days"]:
        assert d["visits"] > 0 and d["requests"] >= d["visits"] and d["model_versions"]


def test_ctr_follows_from_the_counts(run):
    _, s, _ = run
    rows = [s["totals"], *s["days"], *s["slots"].values(), *s["arms"], *s["cells"]]
    for r in rows:
        assert r["ctr"] == pytest.approx(r["clicks"] / r["impressions"], abs=1e-6)
        assert r["purchase_rate"] == pytest.approx(r["purchases"] / r["impressions"], abs=1e-6)
    for group in (s["days"], list(s["slots"].values()), s["arms"], s["cells"]):
        for key in COUNT_KEYS:
            assert sum(r[key] for r in group) == s["totals"][key]
    assert 0 < s["totals"]["clicks"] < s["totals"]["impressions"]


def test_a_nightly_retrain_changed_the_model(run):
    _, s, _ = run
    day1, day2 = s["days"]
    assert day1["retrain"]["version"] in day2["model_versions"]
    assert set(day1["model_versions"]).isdisjoint(day2["model_versions"])
    assert day2["retrain"] is None  # no night after the last day


def test_the_event_log_holds_what_was_served_and_clicked(run):
    out, s, _ = run
    log = read_log(out / "log")
    event = log.column("event")
    served = log.filter(pc.equal(event, "served"))
    clicks = log.filter(pc.equal(event, "click"))
    assert served.num_rows == s["totals"]["impressions"] and clicks.num_rows == s["totals"]["clicks"]
    assert set(served.column("slot").to_pylist()) == set(SLOTS)
    assert all(clicks.column("request_id").to_pylist())
    assert set(clicks.column("slot").to_pylist()) <= set(SLOTS)
    assert pc.all(pc.is_in(clicks.column("request_id"), value_set=served.column("request_id"))).as_py()
    start = s["config"]["start"]
    ts = log.column("ts").to_numpy()
    assert start <= ts.min() and ts.max() < start + 2 * DAY  # the simulated clock, not the wall clock
    assert s["log"]["complete"] and s["log"]["clicks_without_served_record"] == 0


EXPERIMENT = """
[experiments.checkin_rerank]
slots = ["check_in"]
salt = "sim"
[[experiments.checkin_rerank.arms]]
name = "control"
weight = 50
[[experiments.checkin_rerank.arms]]
name = "no_rerank"
weight = 50
slot = { rerank = false }
"""


def test_an_experiment_in_the_rules_shows_up_as_arms(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(EXPERIMENT)
    result = simulate("--members", "200", "--days", "1", "--retrain", "never", "--rules", str(rules),
                      "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    arms = {(a["experiment"], a["arm"]): a for a in s["arms"]}
    assert set(arms) == {("checkin_rerank", "control"), ("checkin_rerank", "no_rerank"), ("", "")}
    assert all(a["impressions"] > 0 for a in arms.values())
    assert {c["slot"] for c in s["cells"] if c["experiment"]} == {"check_in"}
    served = read_log(tmp_path / "run" / "log", events=["served"], columns=["experiment", "arm"])
    assert set(zip(*(served.column(c).to_pylist() for c in ("experiment", "arm")), strict=True)) == set(arms)


@pytest.mark.parametrize(("args", "message"), [
    (("--members", "5"), "--members must be at least 20"),
    (("--days", "0"), "--days must be from 1 to 365"),
    (("--rules", "/no/such/rules.toml"), "--rules /no/such/rules.toml: no such file"),
])
def test_bad_arguments_are_clear_errors(tmp_path, args, message):
    result = simulate("--out", str(tmp_path / "x"), *args)
    assert isinstance(result.exception, SimulateError) and isinstance(result.exception, MallrecError)
    assert message in str(result.exception)
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_a_bad_rules_file_is_refused_before_anything_runs(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[slots.check_in]\nsources = [{use = "nope"}]\n')
    result = simulate("--out", str(tmp_path / "x"), "--rules", str(rules))
    assert isinstance(result.exception, MallrecError) and "unknown source 'nope'" in str(result.exception)
    assert not (tmp_path / "x").exists()


def test_a_used_output_folder_is_refused(run):
    out, _, _ = run
    result = simulate("--out", str(out))
    assert isinstance(result.exception, SimulateError) and "already holds a run" in str(result.exception)


def test_hidden_choice_model():
    """Favourite categories are more attractive, lower positions less examined, plans reproducible."""
    tastes = hidden_tastes(members=300, items=200, seed=5, now=1_800_000_000)
    world = World(tastes, seed=5)
    items = np.arange(len(tastes.item_ids))
    attract = np.array([world.attractiveness(m, items) for m in range(300)])
    fav = tastes.item_cat[None, :] == tastes.pref_cat[:, :1]
    assert attract[fav].mean() > 3 * attract[~fav].mean()
    assert (np.diff(world.examination(10)) < 0).all()
    search = world.attractiveness(0, items, target=("category", int(tastes.pref_cat[0, 2])))
    assert search.mean() > attract[0].mean()
    assert World(tastes, seed=5).plan(1) == world.plan(1) != World(tastes, seed=6).plan(1)
