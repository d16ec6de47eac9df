"""Compaction of the event log: a closed day's many small part files become one file (or a few of at
most ``target_rows`` rows), so every reader opens a handful of files per day instead of thousands.

Only closed days are touched (UTC days strictly before today): the sink writes today's records. A late
record for an old day can still land there as a new small part; the next compaction merges it in.

Each output is written under a temporary name, fsynced, renamed into place as
``part-<first id>_<last id>.parquet`` (the range of the parts it holds), the folder fsynced, and only
then are its parts deleted. A crash between the rename and the deletes leaves the output and some of
its parts: ``schema.log_files`` skips a part whose range lies inside another file's, and the next run
deletes such parts first.

Only parts the sink's checkpoint covers (last id <= checkpoint) are merged: a part above it belongs to
a batch the sink may still remove and write again on restart (``files.remove_uncommitted``), so it
must stay a file of its own. An output's last id is thus at or below the checkpoint, and the sink's
recovery, which removes files whose first id is above it, never removes an output.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from service.durable import fsync_dir
from service.errors import MallrecError
from service.eventlog.files import STATE_DIR, read_checkpoint
from service.eventlog.schema import SCHEMA, StreamId, covered_parts, day, part_range, sid

TARGET_ROWS = 5_000_000
ROW_GROUP_ROWS = 256 * 1024  # rows buffered per row group: bounds memory whatever a day's size
LOCK = ".compact.lock"
TMP_PREFIX = ".compact-"


class CompactError(MallrecError):
    """A log folder compaction cannot work on (missing, another run holds it, a bad date)."""


class DayError(Exception):
    """One day could not be compacted (a part that does not read, an unexpected schema)."""


@dataclass
class DayResult:
    date: str
    files_before: int = 0  # parts merged
    files_after: int = 0  # outputs written
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    leftovers: int = 0  # parts an earlier, interrupted run had merged already (deleted now)
    pending: int = 0  # parts above the sink's checkpoint (left as they are)
    error: str = ""
    outputs: list[Path] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.files_before or self.leftovers)


@dataclass
class _Part:
    path: Path
    first: StreamId
    last: StreamId
    rows: int
    size: int


def closed_days(log_dir: Path, *, days: int | None = None, date: str | None = None,
                now: float | None = None) -> list[str]:
    """The day folders to look at: before today (UTC), the last ``days`` of them or only ``date``."""
    today = day(time.time() if now is None else now)
    if date is not None:
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            raise CompactError(f"--date {date}: not a date (YYYY-MM-DD)") from None
        if date >= today:
            raise CompactError(f"--date {date}: not a closed day (today is {today} UTC; the sink may still "
                               f"write it)")
        return [date] if (log_dir / f"date={date}").is_dir() else []
    found = sorted(p.name[5:] for p in log_dir.glob("date=*") if p.is_dir() and p.name[5:] < today)
    if days is not None:
        first = (dt.date.fromisoformat(today) - dt.timedelta(days=days)).isoformat()
        found = [d for d in found if d >= first]
    return found


def needs_compacting(folder: Path) -> bool:
    """A day folder with more than one part, or an interrupted run's temporary output: the only days
    worth opening (a day already compacted holds one part and nothing else)."""
    if any(folder.glob(f"{TMP_PREFIX}*.tmp")):
        return True
    parts = 0
    for p in folder.glob("part-*.parquet"):
        parts += p.is_file()
        if parts > 1:
            return True
    return False


def _limit(log_dir: Path) -> StreamId | None:
    """The highest id a merged part may hold: the sink's checkpoint; None without one (no sink
    committed here, so no recovery can remove what compaction writes)."""
    if not (log_dir / STATE_DIR / "checkpoint").is_file():
        return None
    return sid(read_checkpoint(log_dir))


def _chunks(parts: list[_Part], target_rows: int) -> list[list[_Part]]:
    """Consecutive parts grouped into outputs of at most ``target_rows`` rows (a part is never split,
    so each output's range holds exactly its parts); only groups of two or more are worth writing."""
    groups: list[list[_Part]] = []
    rows = 0
    for p in parts:
        if groups and rows + p.rows <= target_rows:
            groups[-1].append(p)
            rows += p.rows
        else:
            groups.append([p])
            rows = p.rows
    return [g for g in groups if len(g) > 1]


def _open(path: Path) -> pq.ParquetFile:
    try:
        f = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DayError(f"{path.name}: cannot read ({str(e).splitlines()[0]})") from e
    if not f.schema_arrow.equals(SCHEMA):
        raise DayError(f"{path.name}: not the event log's schema")
    return f


def _write(folder: Path, group: list[_Part]) -> Path:
    """The group's rows, in order, as one file renamed into place (the parts are still there)."""
    name = f"part-{group[0].path.name[5:].partition('_')[0]}_{group[-1].path.name.rpartition('_')[2]}"
    tmp, final = folder / f"{TMP_PREFIX}{name}.tmp", folder / name
    written = 0
    try:
        with open(tmp, "wb") as f:
            with pq.ParquetWriter(f, SCHEMA, compression="zstd") as writer:
                buf: list[pa.RecordBatch] = []
                held = 0
                for p in group:
                    src = _open(p.path)
                    try:
                        for batch in src.iter_batches(batch_size=64 * 1024):
                            buf.append(batch)
                            held += batch.num_rows
                            if held >= ROW_GROUP_ROWS:
                                writer.write_table(pa.Table.from_batches(buf, SCHEMA), ROW_GROUP_ROWS)
                                written += held
                                buf, held = [], 0
                    except (pa.ArrowException, OSError) as e:
                        raise DayError(f"{p.path.name}: cannot read ({str(e).splitlines()[0]})") from e
                if buf:
                    writer.write_table(pa.Table.from_batches(buf, SCHEMA), ROW_GROUP_ROWS)
                    written += held
            f.flush()
            os.fsync(f.fileno())
        expected = sum(p.rows for p in group)
        if written != expected:
            raise DayError(f"{name}: wrote {written} rows, the parts hold {expected}")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    return final


def _delete(paths: list[Path]) -> None:
    """The parts an output holds (the output is renamed into place and fsynced)."""
    for p in paths:
        p.unlink(missing_ok=True)


def compact_day(log_dir: Path, date: str, *, target_rows: int = TARGET_ROWS, dry_run: bool = False,
                limit: StreamId | None = None) -> DayResult:
    """One day: delete the parts an interrupted run already merged, then merge the rest (those at or
    below ``limit``) group by group; a day that fails reports its error and keeps its files."""
    folder = log_dir / f"date={date}"
    res = DayResult(date)
    try:
        for stale in folder.glob(f"{TMP_PREFIX}*.tmp"):  # an earlier run's unfinished output
            if not dry_run:
                stale.unlink(missing_ok=True)
        files = sorted(p for p in folder.glob("part-*.parquet") if p.is_file())
        covered = covered_parts(files)
        res.leftovers = len(covered)
        live: list[_Part] = []
        for p in files:
            r = part_range(p)
            if p in covered or r is None:
                continue
            if limit is not None and r[1] > limit:
                res.pending += 1
                continue
            # every file that can cover a part opens here, before any part is deleted
            live.append(_Part(p, r[0], r[1], _open(p).metadata.num_rows, p.stat().st_size))
        live.sort(key=lambda p: p.first)
        for a, b in zip(live, live[1:], strict=False):
            if b.first <= a.last:
                raise DayError(f"{a.path.name} and {b.path.name}: overlapping stream-id ranges")
        if not dry_run and covered:
            _delete(sorted(covered))
            fsync_dir(folder)
        for group in _chunks(live, target_rows):
            res.files_before += len(group)
            res.files_after += 1
            res.rows += sum(p.rows for p in group)
            res.bytes_before += sum(p.size for p in group)
            if dry_run:
                continue
            out = _write(folder, group)
            res.outputs.append(out)
            res.bytes_after += out.stat().st_size
            _delete([p.path for p in group])
            fsync_dir(folder)
    except DayError as e:
        res.error = str(e)
    except OSError as e:
        res.error = f"{e.strerror or e}: {e.filename or folder}"
    return res


def compact_log(log_dir: Path, *, days: int | None = None, date: str | None = None,
                target_rows: int = TARGET_ROWS, dry_run: bool = False, now: float | None = None,
                untidy_only: bool = False) -> Generator[DayResult, None, None]:
    """Compact each closed day in turn (one result per day, as it finishes; with ``untidy_only``, only
    the days ``needs_compacting``). One run at a time: a lock file in LOG_DIR (``.compact.lock``;
    readers skip dot files) keeps a second one out, the sink's own compaction included."""
    if not log_dir.is_dir():
        raise CompactError(f"{log_dir}: no such folder (expected the event log: "
                           f"date=YYYY-MM-DD/part-*.parquet)")
    if target_rows < 1:
        raise CompactError(f"--target-rows {target_rows}: must be at least 1")
    selected = closed_days(log_dir, days=days, date=date, now=now)
    if untidy_only:
        selected = [d for d in selected if needs_compacting(log_dir / f"date={d}")]
    limit = _limit(log_dir)
    with contextlib.ExitStack() as stack:
        if not dry_run:
            lock = stack.enter_context(open(log_dir / LOCK, "a"))
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CompactError(f"{log_dir}: another compaction (`mallrec log compact`, or the "
                                   f"sink's own) is running on it") from None
        for d in selected:
            yield compact_day(log_dir, d, target_rows=target_rows, dry_run=dry_run, limit=limit)
