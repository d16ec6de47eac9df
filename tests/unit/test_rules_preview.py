"""`mallrec rules preview`: a slot for one member with its full trace, and --diff over a sample,
in-process on a published bundle (no server, no Redis)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.errors import MallrecError
from service.rules.preview import parse_at
from tests.fixtures.rules import POPULAR
from tests.fixtures.service import NOW
from tests.fixtures.tiny_bundle import publish_tiny

VEGAN = '[[slots.t.rules]]\nname = "Vegan week"\ntype = "boost"\ntag = "vegan"\nfactor = 3\n'
PIN = '[[slots.t.rules]]\nname = "Hero"\ntype = "pin"\nitem = "i040"\nposition = 1\n'


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("preview")
    publish_tiny(root / "models", NOW)
    (root / "old.toml").write_text(POPULAR)
    (root / "new.toml").write_text(POPULAR + VEGAN + PIN)
    return {"models": root / "models", "old": root / "old.toml", "new": root / "new.toml"}


def preview(files: dict[str, Path], *args: str) -> str:
    result = CliRunner().invoke(app, ["rules", "preview", "--models", str(files["models"]), "--at", str(NOW),
                                      *args], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def test_preview_shows_the_items_with_reasons_and_the_full_trace(files: dict[str, Path]) -> None:
    body = json.loads(preview(files, "--rules", str(files["new"]), "--member", "m002", "--slot", "t",
                              "--count", "5", "--json"))
    assert body["state"].startswith("none") and body["member"] == "m002"
    assert [i["item_id"] for i in body["items"]][:2] == ["i040", "i005"]
    hero = {"step": "Hero", "kind": "rule", "detail": "pinned at position 1"}
    assert body["items"][0]["reasons"][-1] == hero
    assert body["items"][0]["category"] == "skin" and "price" in body["items"][0]  # i040: 40 % 4 = 0
    trace = {s["step"]: s for s in body["trace"]}
    assert trace["popular"]["kind"] == "source" and len(trace["popular"]["added"]) == 20
    assert trace["in_stock"]["removed"] == ["i000"] and trace["on_shelf"]["removed"] == ["i001"]
    assert trace["Vegan week"]["note"].startswith("boost ×3: tag vegan")
    assert trace["Hero"]["added"] == ["i040"]
    assert body["outline"][0].startswith("sources:")
    text = preview(files, "--rules", str(files["new"]), "--member", "m002", "--slot", "t", "--count", "5")
    for fragment in ("what the member sees", "trace", "Vegan week", "pinned at position 1", "state: none"):
        assert fragment in text


def test_diff_counts_what_a_change_moves_over_a_sample(files: dict[str, Path]) -> None:
    body = json.loads(preview(files, "--rules", str(files["old"]), "--diff", str(files["new"]), "--slot", "t",
                              "--count", "6", "--members", "10", "--json"))
    assert body["members"] == 10 and body["members_changed"] == 10
    assert 0 < body["positions_changed_share"] <= 1
    assert body["entering"]["i040"] == 10 and body["entering"]["i010"] == 10
    assert body["rules"]["Hero"] == {"acted_old": 0, "acted_new": 10, "gave_way_old": 0, "gave_way_new": 0}
    text = preview(files, "--rules", str(files["old"]), "--diff", str(files["new"]), "--slot", "t",
                   "--members", "5")
    assert "members whose slot changed: 5 of 5" in text and "Vegan week" in text
    assert f"{files['old']} (" in text and f"-> {files['new']} (" in text, "the header names both files"


def test_at_reads_epoch_seconds_or_iso_in_the_rules_time_zone() -> None:
    from zoneinfo import ZoneInfo

    shanghai = ZoneInfo("Asia/Shanghai")
    assert parse_at("1700000000", shanghai, 0) == 1_700_000_000
    assert parse_at("2026-06-01T08:00", shanghai, 0) == parse_at("2026-06-01T00:00Z", shanghai, 0)
    assert parse_at(None, shanghai, 42.0) == 42.0
    with pytest.raises(MallrecError, match="--at"):
        parse_at("tomorrow", shanghai, 0)


def test_an_unknown_slot_is_one_clear_error(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["rules", "preview", "--models", str(files["models"]), "--rules",
                                      str(files["old"]), "--member", "m1", "--slot", "nope"])
    assert result.exit_code != 0 and "no such slot" in str(result.exception)
