"""Train on a small slice of real data through the CLI and load the published bundle back.

Reads ../shared/datasets (present in CI and on developer machines, absent in a user's clone: then
these tests are skipped with the reason).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service import model_bundle as mb

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
pytestmark = [pytest.mark.shared,
              pytest.mark.skipif(not (SHARED / "amazon-beauty").exists(),
                                 reason=f"{SHARED} not found: real-data tests need ../shared/datasets")]


def mallrec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=240)


@pytest.fixture(scope="module")
def beauty_slice(tmp_path_factory) -> Path:
    """The first 20,000 events of amazon-beauty (whole member histories in file order)."""
    out = tmp_path_factory.mktemp("beauty")
    lines = (SHARED / "amazon-beauty" / "events.csv").read_text().splitlines()[:20_001]
    (out / "events.csv").write_text("\n".join(lines) + "\n")
    (out / "items.csv").write_text((SHARED / "amazon-beauty" / "items.csv").read_text())
    return out


def test_train_on_real_slice_and_load_bundle(beauty_slice, tmp_path):
    models = tmp_path / "models"
    run = mallrec("train", "--events", beauty_slice / "events.csv", "--items", beauty_slice / "items.csv",
                  "--out", models)
    assert run.returncode == 0, run.stderr
    version = mb.current_version(models)
    assert f"published {version}" in run.stdout.strip().splitlines()[-1]
    bundle = mb.load(models)
    stats = bundle.manifest["data_stats"]
    assert stats["events"] == 20_000 and stats["items"] == 12_101
    assert bundle.member_factors.shape[0] == stats["members"]
    assert bundle.manifest["index"]["recall_at_100"] >= 0.95
    # a member's history in the bundle is what they bought in the slice
    member = bundle.member_index["1"]
    bought = {str(bundle.items.item_id[i]) for i in bundle.history_items[bundle.history(member)]}
    first = [ln.split(",") for ln in (beauty_slice / "events.csv").read_text().splitlines()[1:]]
    assert bought == {row[1] for row in first if row[0] == "1"}


def test_evaluate_real_slice_writes_json(beauty_slice, tmp_path):
    out = tmp_path / "metrics.json"
    run = mallrec("evaluate", "--events", beauty_slice / "events.csv", "--items", beauty_slice / "items.csv",
                  "--split", "leave-last-out", "--k", "10", "--json", out)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    for name in ("als", "popularity", "als+popularity"):
        assert 0 <= result["models"][name]["hr@10"] <= 1
    assert result["models"]["als"]["members"] > 1000  # every member with a held-out item is scored
    assert result["models"]["als"]["hr@10"] > 0.005  # far above chance (10 / 12,101 items)
