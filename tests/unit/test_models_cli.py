"""`mallrec models list|rollback`: versions newest first with the live one marked; rollback moves
CURRENT to the previous or a named version, and refuses unknown or corrupt ones (CURRENT unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from service import model_bundle as mb
from service.bundle_manifest import BundleError
from service.models_cli import register
from tests.fixtures.tiny_bundle import make_bundle

VERSIONS = ("v1", "v2", "v3")  # published in this order: v3 is live


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def models(*args: str) -> Result:
    return CliRunner().invoke(_app(), ["models", *args])


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    out = tmp_path / "models"
    for day, version in enumerate(VERSIONS, start=1):
        bundle = make_bundle(version=version)
        bundle.manifest["created_at"] = f"2026-09-0{day}T03:00:00Z"
        bundle.manifest["data_stats"] = {"events": 1000 * day, "events_from": "2026-08-01T00:00:00Z",
                                         "events_to": f"2026-09-0{day}T00:00:00Z"}
        if version == "v3":
            bundle.manifest["gate"] = {"passed": True, "new": {"hr@10": 0.25, "ndcg@10": 0.125},
                                       "live": {"hr@10": 0.2, "ndcg@10": 0.1}, "live_version": "v2"}
        mb.publish(bundle, out)
    assert mb.current_version(out) == "v3"
    return out


def test_list_shows_versions_newest_first_and_the_live_one(models_dir: Path) -> None:
    result = models("list", "--models", str(models_dir), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["version"] for r in rows] == ["v3", "v2", "v1"]
    assert [r["live"] for r in rows] == [True, False, False]
    v3 = rows[0]
    assert v3["events_to"] == "2026-09-03T00:00:00Z" and v3["events"] == 3000 and v3["size_bytes"] > 0
    assert v3["metrics"]["gate"]["new"]["hr@10"] == 0.25 and v3["metrics"]["gate"]["live"]["hr@10"] == 0.2

    table = models("list", "--models", str(models_dir))
    assert table.exit_code == 0, table.output
    lines = [line for line in table.output.splitlines() if any(f" {v} " in line for v in VERSIONS)]
    assert [next(v for v in VERSIONS if f" {v} " in line) for line in lines] == ["v3", "v2", "v1"]
    assert "*" in lines[0] and "*" not in lines[1] + lines[2]
    assert "gate hr@10 0.2500 (live 0.2000)" in table.output
    assert "2026-08-01T00:00:00Z .. 2026-09-03T00:00:00Z" in table.output


def test_list_shows_an_unreadable_version_instead_of_failing(models_dir: Path) -> None:
    (models_dir / "versions" / "v1" / "manifest.json").write_text("{not json")
    rows = json.loads(models("list", "--models", str(models_dir), "--json").output)
    assert "not valid JSON" in next(r for r in rows if r["version"] == "v1")["error"]


def test_rollback_goes_to_the_previous_version_then_the_one_before(models_dir: Path) -> None:
    first = models("rollback", "--models", str(models_dir))
    assert first.exit_code == 0, first.output
    assert "live was v3, live now v2" in first.output
    assert mb.current_version(models_dir) == "v2"
    assert mb.load(models_dir, with_index=False).version == "v2"  # what the watcher loads next
    assert models("rollback", "--models", str(models_dir)).exit_code == 0
    assert mb.current_version(models_dir) == "v1"
    oldest = models("rollback", "--models", str(models_dir))
    assert isinstance(oldest.exception, BundleError) and "nothing older" in str(oldest.exception)
    assert mb.current_version(models_dir) == "v1"
    assert sorted(p.name for p in models_dir.iterdir()) == ["CURRENT", "versions"]  # no temp file left


def test_rollback_to_a_named_version(models_dir: Path) -> None:
    result = models("rollback", "--models", str(models_dir), "v1")
    assert result.exit_code == 0, result.output
    assert "live was v3, live now v1" in result.output and mb.current_version(models_dir) == "v1"
    forward = models("rollback", "--models", str(models_dir), "v3")  # naming a newer one rolls forward
    assert forward.exit_code == 0 and mb.current_version(models_dir) == "v3"
    again = models("rollback", "--models", str(models_dir), "v3")
    assert again.exit_code == 0 and "already live" in again.output


@pytest.mark.parametrize("name", ["v9", "../v1", ".incoming-v1", "versions"])
def test_rollback_refuses_a_version_that_does_not_exist(models_dir: Path, name: str) -> None:
    result = models("rollback", "--models", str(models_dir), name)
    assert isinstance(result.exception, BundleError), result.output
    assert f"no version {name!r}" in str(result.exception) and "v1" in str(result.exception)
    assert mb.current_version(models_dir) == "v3"


def test_rollback_refuses_a_corrupt_bundle(models_dir: Path) -> None:
    factors = models_dir / "versions" / "v2" / "member_factors.npy"
    data = bytearray(factors.read_bytes())
    data[-1] ^= 0xFF
    factors.write_bytes(bytes(data))
    result = models("rollback", "--models", str(models_dir))
    assert isinstance(result.exception, BundleError), result.output
    message = str(result.exception)
    assert "not rolling back to v2" in message and "checksum" in message and "still names v3" in message
    assert mb.current_version(models_dir) == "v3"


def test_rollback_refuses_a_bundle_whose_manifest_does_not_validate(models_dir: Path) -> None:
    manifest = models_dir / "versions" / "v1" / "manifest.json"
    raw = json.loads(manifest.read_text())
    del raw["files"]["item_factors.npy"]
    manifest.write_text(json.dumps(raw))
    result = models("rollback", "--models", str(models_dir), "v1")
    assert isinstance(result.exception, BundleError)
    assert "no checksum for item_factors.npy" in str(result.exception)
    assert mb.current_version(models_dir) == "v3"


def test_a_folder_with_nothing_published_is_said_plainly(tmp_path: Path) -> None:
    result = models("list", "--models", str(tmp_path))
    assert isinstance(result.exception, BundleError) and "nothing published" in str(result.exception)
    (tmp_path / "versions").mkdir()
    assert "no published versions" in models("list", "--models", str(tmp_path)).output
    nothing_live = models("rollback", "--models", str(tmp_path))
    assert isinstance(nothing_live.exception, BundleError)
    assert "nothing is live" in str(nothing_live.exception)


def test_list_says_when_the_gate_refused_the_reranker(tmp_path: Path) -> None:
    out = tmp_path / "models"
    bundle = make_bundle(version="v1")
    bundle.manifest["reranker"] = {"valid": {"first_stage_ndcg@10": 0.137, "rerank_ndcg@10": 0.129,
                                             "shipped": False, "reason": "the gate refused"}}
    mb.publish(bundle, out)
    table = models("list", "--models", str(out))
    assert table.exit_code == 0, table.output
    assert "refused by the gate: not shipped" in " ".join(table.output.split())
