"""The sink's files: each batch of stream entries becomes one Parquet file per day, written atomically,
then a checkpoint names the batch's last stream id.

A batch is committed in this order: every day's file is written under a temporary name and fsynced,
then renamed into place (``part-<first id>_<last id>.parquet``), the folders are fsynced, and only
then the checkpoint moves to the batch's last id. The sink acknowledges the entries in Redis after
that. So after a crash:

- files whose first id is above the checkpoint belong to a batch that was not committed: they are
  removed, and the batch is written again from the entries Redis still holds as pending;
- pending entries at or below the checkpoint are in files already: they are acknowledged, not
  written again.

``mallrec log compact`` (service.eventlog.compact) merges only parts at or below the checkpoint, so a
compacted file's first id is too and this recovery never removes one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from service.durable import fsync_dir
from service.eventlog.schema import LogRecord, day, part_range, partition_dir, sid, to_table

STATE_DIR = "_sink"
START = "0-0"


def newest_sid(reply: Sequence[tuple[bytes | str | None, object]] | None) -> tuple[int, int]:
    """The entry id of an ``XREVRANGE key + - COUNT 1`` reply as a pair; (0, 0) for an empty stream."""
    if not reply:
        return 0, 0
    entry_id = reply[0][0]
    return sid(entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id))


def read_checkpoint(log_dir: Path) -> str:
    """The last stream id written to the log (``0-0`` when nothing was)."""
    f = log_dir / STATE_DIR / "checkpoint"
    return f.read_text().strip() if f.is_file() else START


def write_checkpoint(log_dir: Path, last_id: str) -> None:
    d = log_dir / STATE_DIR
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / ".checkpoint.tmp"
    with open(tmp, "w") as f:
        f.write(last_id + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, d / "checkpoint")
    fsync_dir(d)


def write_batch(log_dir: Path, records: Sequence[LogRecord] | pa.Table, first_id: str,
                last_id: str) -> list[Path]:
    """One file per UTC day of the records, renamed into place only once all are fsynced."""
    table = records if isinstance(records, pa.Table) else to_table(records)
    days = table.column("ts").to_numpy() // 86400
    name = f"part-{first_id}_{last_id}.parquet"
    staged: list[tuple[Path, Path]] = []
    for d in np.unique(days):
        folder = partition_dir(log_dir, day(int(d) * 86400))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.tmp"
        part = table if len(days) and (days == d).all() else table.filter(pa.array(days == d))
        with open(tmp, "wb") as f:
            pq.write_table(part, f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())
        staged.append((tmp, folder / name))
    for tmp, final in staged:
        os.replace(tmp, final)
    for _, final in staged:
        fsync_dir(final.parent)
    fsync_dir(log_dir)
    return [final for _, final in staged]


def remove_uncommitted(log_dir: Path, checkpoint: str) -> list[Path]:
    """Remove the files of a batch the checkpoint does not cover, and the sink's own temporary files
    left by a crash. Anything else is not the sink's to remove: a compaction's temporary output, a
    file whose name holds no stream-id range (a user's copy, say)."""
    removed = []
    last = sid(checkpoint)
    for folder in log_dir.glob("date=*"):
        for f in folder.iterdir():
            held = part_range(f)
            ours = f.name.startswith(".part-") and f.name.endswith(".tmp")
            if ours or (held is not None and held[0] > last):
                f.unlink()
                removed.append(f)
    return removed

