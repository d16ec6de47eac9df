"""Version housekeeping in MODELS_DIR: the pointer files (``CURRENT``, ``PINNED``) and pruning.

``PINNED`` lists versions that pruning (``mallrec train --keep N``) never removes, e.g. one an
experiment arm serves (``model = "<version>"`` in the rules file). One version a line, an optional
note after it (after whitespace or a ``#``); blank lines and ``#`` lines are ignored::

    # versions `mallrec train --keep` never removes (`mallrec models pin|unpin`)
    20261201T020000.000Z-ab12cd  # checkin_popular experiment, arm "older"

It is replaced atomically, as ``CURRENT`` is, so the trainer never reads half a list.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from service.durable import fsync_dir

CURRENT_FILE = "CURRENT"
PINNED_FILE = "PINNED"
VERSIONS_DIR = "versions"

_PINNED_HEADER = "# versions `mallrec train --keep` never removes (`mallrec models pin|unpin`)\n"


def replace_file(models_dir: Path, name: str, text: str) -> None:
    """Replace ``models_dir/name`` with ``text`` atomically and durably (temp file, fsync, rename,
    fsync the folder): a reader sees the old content or the new, and a crash cannot leave it empty."""
    tmp = models_dir / f".{name}.{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, models_dir / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(models_dir)


def read_pinned(models_dir: str | Path) -> dict[str, str]:
    """The pinned versions and their notes ('' without one), in file order; {} without a PINNED file."""
    try:
        text = (Path(models_dir) / PINNED_FILE).read_text()
    except FileNotFoundError:
        return {}
    pins: dict[str, str] = {}
    for line in text.splitlines():
        head, _, comment = line.partition("#")  # a version never holds '#' (VERSION_PATTERN)
        parts = head.split(maxsplit=1)
        if parts:
            pins[parts[0]] = " ".join(" ".join(parts[1:] + [comment]).split())
    return pins


def write_pinned(models_dir: str | Path, pins: dict[str, str]) -> None:
    """Replace PINNED with ``pins`` (version -> note)."""
    lines = [f"{v}  # {' '.join(note.split())}" if note.strip() else v for v, note in pins.items()]
    replace_file(Path(models_dir), PINNED_FILE, _PINNED_HEADER + "".join(f"{line}\n" for line in lines))


def published(versions: Path) -> list[Path]:
    """The complete bundle folders in ``versions`` (not those being written), oldest first by name
    (version ids sort by their creation time)."""
    return sorted((p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def prune(versions: Path, keep: int, protect: set[str | None], pinned: set[str]) -> list[str]:
    """Remove all but the newest ``keep`` unpinned versions, never one in ``protect`` or ``pinned``
    (pinned ones do not count toward ``keep``). Returns the pinned versions that were kept only
    because they are pinned."""
    done = published(versions)
    unpinned = [p for p in done if p.name not in pinned]
    for old in unpinned[:-keep] if keep > 0 else []:
        if old.name not in protect:
            shutil.rmtree(old, ignore_errors=True)
    would_go = {p.name for p in (done[:-keep] if keep > 0 else [])} - protect
    return [p.name for p in done if p.name in pinned and p.name in would_go]
