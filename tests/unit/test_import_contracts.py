"""The import contracts in .importlinter hold (lint-imports, from the dev extra), and the CLI's list of
modules that only the train extra installs (service.errors.TRAIN_EXTRA_MODULES) matches the locks."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from service.errors import TRAIN_EXTRA_MODULES, MissingExtra

ROOT = Path(__file__).resolve().parents[2]


def test_lint_imports_keeps_every_contract() -> None:
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), "lint-imports is missing: pip install -r requirements-dev.lock"
    done = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert re.search(r"Contracts: (\d+) kept, 0 broken", done.stdout), done.stdout[-2000:]
    assert int(re.search(r"Contracts: (\d+) kept", done.stdout).group(1)) >= 2


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _lock(name: str) -> set[str]:
    return {_norm(n) for n in re.findall(r"^([A-Za-z0-9][\w.-]*)==", (ROOT / name).read_text(), re.M)}


def test_the_train_only_modules_are_what_the_train_extra_adds() -> None:
    """Each name in TRAIN_EXTRA_MODULES is imported from a distribution that requirements.lock has and
    requirements-serve.lock does not; so a serve-only install never blames the extra for its own bug."""
    train_only = _lock("requirements.lock") - _lock("requirements-serve.lock")
    owners = {m: {_norm(d) for d in ds} for m, ds in packages_distributions().items()}
    for module in TRAIN_EXTRA_MODULES:
        assert owners.get(module), f"{module}: not installed here (the dev venv has the train extra)"
        assert owners[module] <= train_only, f"{module} comes from {owners[module]}, not only the train extra"
    # and every package the train extra names is covered
    for dist in ("scipy", "implicit", "threadpoolctl", "lightgbm", "onnx", "onnxmltools", "optuna", "duckdb",
                 "matplotlib"):
        assert any(dist in owners.get(m, ()) for m in TRAIN_EXTRA_MODULES), dist


def test_a_missing_train_module_becomes_one_line_naming_the_command() -> None:
    missing = MissingExtra.of(ModuleNotFoundError("No module named 'scipy'", name="scipy.sparse"), ["train"])
    assert str(missing) == "mallrec train needs the training extra: pip install 'mallrec[train]'"
    assert missing is not None and missing.exit_code == 2
    assert MissingExtra.of(ModuleNotFoundError(name="grpc"), ["serve"]) is None  # a real bug keeps its trace
    assert "this command" in str(MissingExtra.of(ModuleNotFoundError(name="lightgbm"), []))
