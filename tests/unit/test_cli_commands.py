"""CLI: errors are one line (no traceback); --help says what --rules does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from service.cli import app


def mallrec(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}  # rich wraps at the terminal width
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_serve_help_says_what_rules_do() -> None:
    out = " ".join(CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "--rules" in out and "reloaded when it changes" in out and "--redis-url" in out
    rules = CliRunner().invoke(app, ["rules", "--help"], env={"COLUMNS": "200"}).output
    assert "check" in rules and "preview" in rules


def test_user_errors_are_one_clear_line(tmp_path: Path) -> None:
    missing = mallrec("serve", "--models", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "no such folder" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    unreachable = mallrec("recommend", "--target", "127.0.0.1:1", "--member", "m", "--slot", "check_in",
                          "--timeout", "1")
    assert unreachable.returncode == 2 and "Traceback" not in unreachable.stderr
    assert "cannot reach mallrec at 127.0.0.1:1" in unreachable.stderr
    no_slot = mallrec("recommend", "--member", "m")
    assert no_slot.returncode == 2 and "--slot" in no_slot.stderr
