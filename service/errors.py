"""The one base class for errors a user caused and can fix (bad file, bad flag, no model).

The CLI prints these as one clear message and exits non-zero; anything else is a bug and keeps its
traceback. A missing optional extra is such an error: a serve-only install (`pip install mallrec`)
lacks the training stack, and `mallrec train` there says which extra to install (`MissingExtra.of`,
used by the CLI root) instead of an ImportError traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class MallrecError(Exception):
    """An error with a message meant for the person who ran the command."""

    exit_code = 2


# Top-level import names that only `mallrec[train]` installs (pyproject.toml's `train` extra and what it
# pulls in that the serve set does not); tests/unit/test_import_contracts.py keeps it in step.
TRAIN_EXTRA_MODULES = frozenset({
    "scipy", "implicit", "threadpoolctl", "lightgbm", "onnx", "onnxmltools", "skl2onnx", "sklearn",
    "optuna", "sqlalchemy", "alembic", "duckdb", "matplotlib",
})


class MissingExtra(MallrecError):
    """A command whose imports need an extra that this install does not have."""

    @classmethod
    def of(cls, exc: ModuleNotFoundError, argv: Sequence[str]) -> MissingExtra | None:
        """The user-facing error for `exc` when its module belongs to the train extra, else None.

        `argv` is the command line after the program name (its first word names the command)."""
        if (exc.name or "").partition(".")[0] not in TRAIN_EXTRA_MODULES:
            return None
        command = f"mallrec {argv[0]}" if argv and not argv[0].startswith("-") else "this command"
        return cls(f"{command} needs the training extra: pip install 'mallrec[train]'")
