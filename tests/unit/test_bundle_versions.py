"""Pinned versions (MODELS_DIR/PINNED): `mallrec train --keep N` never prunes them and does not count
them toward N; `mallrec models pin|unpin` write the file atomically, `models list` shows the pins, a
pin of an unknown version is a one-line error, and `rules check --models` warns when an experiment
arm's model version is not pinned."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from service import bundle_versions as bv
from service import model_bundle as mb
from service.models_cli import register
from service.rules.loader import load_rules
from tests.fixtures.tiny_bundle import make_bundle


def models(*args: str) -> Result:
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, ["models", *args])


def publish(out: Path, *versions: str, keep: int = 10, notify: list[str] | None = None) -> None:
    for v in versions:
        mb.publish(make_bundle(version=v), out, keep=keep,
                   notify=None if notify is None else notify.append)


def on_disk(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "versions").iterdir())


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    out = tmp_path / "models"
    publish(out, "v1", "v2", "v3")
    return out


def test_pruning_keeps_pinned_versions_and_does_not_count_them(tmp_path: Path) -> None:
    out = tmp_path / "models"
    publish(out, "v1", "v2", "v3", "v4", "v5")
    bv.write_pinned(out, {"v1": "old experiment", "v5": ""})
    said: list[str] = []
    publish(out, "v6", keep=2, notify=said)
    # unpinned, newest first: v6, v4 kept (keep=2), v3 v2 go; v1 and v5 stay because they are pinned
    assert on_disk(out) == ["v1", "v4", "v5", "v6"]
    assert mb.current_version(out) == "v6"
    assert said == ["kept pinned version v1 beyond --keep 2 (`mallrec models unpin` lets one go)"]
    bv.write_pinned(out, {})
    publish(out, "v7", keep=2, notify=said)
    assert on_disk(out) == ["v6", "v7"] and len(said) == 1  # unpinned: pruned as before


def test_the_pinned_file_reads_notes_and_comments(tmp_path: Path) -> None:
    (tmp_path / "PINNED").write_text("# header\n\nv1\nv2   arm older of checkin\nv3# a comment\n"
                                     "  v4  note  # and comment \n")
    assert bv.read_pinned(tmp_path) == {"v1": "", "v2": "arm older of checkin", "v3": "a comment",
                                        "v4": "note and comment"}
    bv.write_pinned(tmp_path, bv.read_pinned(tmp_path))
    assert bv.read_pinned(tmp_path)["v4"] == "note and comment"
    assert bv.read_pinned(tmp_path / "nowhere") == {}


def test_pin_and_unpin_round_trip_through_list(models_dir: Path) -> None:
    pinned = models("pin", "--models", str(models_dir), "v1", "--note", "checkin experiment\narm b")
    assert pinned.exit_code == 0, pinned.output
    assert "pinned v1 (checkin experiment arm b)" in pinned.output
    assert bv.read_pinned(models_dir) == {"v1": "checkin experiment arm b"}
    assert sorted(p.name for p in models_dir.iterdir()) == ["CURRENT", "PINNED", "versions"]  # no temp

    rows = json.loads(models("list", "--models", str(models_dir), "--json").output)
    assert [(r["version"], r["pinned"], r["pin_note"]) for r in rows] == [
        ("v3", False, None), ("v2", False, None), ("v1", True, "checkin experiment arm b")]
    table = models("list", "--models", str(models_dir))
    assert table.exit_code == 0, table.output
    v1_line = next(line for line in table.output.splitlines() if " v1 " in line)
    assert "pinned" in v1_line
    assert not any("pinned" in line for line in table.output.splitlines() if " v2 " in line or " v3 " in line)

    assert models("pin", "--models", str(models_dir), "v2").exit_code == 0
    assert bv.read_pinned(models_dir) == {"v1": "checkin experiment arm b", "v2": ""}
    unpinned = models("unpin", "--models", str(models_dir), "v1")
    assert unpinned.exit_code == 0 and "unpinned v1" in unpinned.output
    assert bv.read_pinned(models_dir) == {"v2": ""}
    again = models("unpin", "--models", str(models_dir), "v1")
    assert again.exit_code == 0 and "v1 is not pinned" in again.output and "pinned: v2" in again.output
    rows = json.loads(models("list", "--models", str(models_dir), "--json").output)
    assert [r["version"] for r in rows if r["pinned"]] == ["v2"]


def test_list_warns_about_a_pin_whose_version_is_gone(models_dir: Path) -> None:
    bv.write_pinned(models_dir, {"v0": "removed by hand"})
    result = models("list", "--models", str(models_dir))
    assert result.exit_code == 0
    assert "PINNED names v0, not in" in " ".join(result.output.split())


@pytest.mark.parametrize("name", ["v9", "../v1", ".incoming-v1"])
def test_pinning_a_missing_version_is_one_line_without_a_traceback(
        models_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service import cli

    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at the terminal's width; the message is one line
    monkeypatch.setattr(sys, "argv", ["mallrec", "models", "pin", "--models", str(models_dir), name])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    assert f"cannot pin {name!r}" in lines[0] and str(models_dir / "versions") in lines[0]
    assert "v3, v2, v1" in lines[0]
    assert not (models_dir / "PINNED").exists()


EXPERIMENT = """
[experiments.checkin_older]
slots = ["check_in"]
salt = "2026-12"
[[experiments.checkin_older.arms]]
name = "control"
weight = 50
[[experiments.checkin_older.arms]]
name = "older"
weight = 50
model = "v1"
"""


def test_rules_check_warns_when_an_arm_model_is_not_pinned(models_dir: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(EXPERIMENT)

    def warnings() -> list[str]:
        loaded = load_rules(rules, models_dir=models_dir)  # a warning, not an error: the file loads
        return [p.message for p in loaded.problems if p.level == "warning" and "pinned" in p.message]

    assert warnings() == [f"arm model v1 is not pinned: `mallrec train --keep` may remove it; run "
                          f"`mallrec models pin --models {models_dir} v1`"]
    assert models("pin", "--models", str(models_dir), "v1").exit_code == 0
    assert warnings() == []
