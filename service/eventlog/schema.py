"""The event log's schema: the contract between the service (which writes it) and training and
reports (which read it).

Every accepted ``TrackEvents`` event and every item the service serves is one record. Records travel
through a Redis Stream as one encoded string each (``encode`` / ``decode``), and the sink writes them
to day-partitioned Parquet files, hive style, so pyarrow, DuckDB and Spark read the folder as it is:

    LOG_DIR/date=YYYY-MM-DD/part-<first stream id>_<last stream id>.parquet

``date`` is the UTC day of the record's ``ts``; it is a partition column (in the path, not in the
file). ``log_files`` is the one listing every reader uses (``read_log``, the trainer, the report).

``mallrec log compact`` merges a closed day's parts into ``part-<first of all>_<last of all>.parquet``
and then deletes them; a crash between the two leaves both. ``log_files`` therefore skips a part
whose id range lies inside another file's range in the same day folder: its rows are in that file.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

if TYPE_CHECKING:
    from service.domain import Event

#: Behaviour the models learn from (the trainer's input event types).
BEHAVIOUR = ("view", "click", "fav", "cart", "purchase")
#: ``impression``: the frontend saw the item scroll into view; ``served``: the service returned it.
LOG_EVENTS = (*BEHAVIOUR, "impression", "served")
SCHEMA_VERSION = "v1"
SEP = "\x1f"  # ASCII unit separator: ids are checked to hold no control characters
LIST_SEP = "\x1e"  # between the names of a served item's rules

SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),  # unique: resends with the same id are dropped
    pa.field("member_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("event", pa.string(), nullable=False),  # one of LOG_EVENTS
    pa.field("ts", pa.int64(), nullable=False),  # seconds since the epoch (UTC)
    pa.field("quantity", pa.int32(), nullable=False),  # units (purchases); 1 otherwise
    pa.field("slot", pa.string(), nullable=False),  # "" when unknown
    pa.field("position", pa.int32(), nullable=False),  # 0-based position in the slot; -1 when unknown
    pa.field("request_id", pa.string(), nullable=False),  # the Recommend call that served the item
    pa.field("source", pa.string(), nullable=False),  # the candidate source that brought a served item
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("rules_version", pa.string(), nullable=False),
    pa.field("experiment", pa.string(), nullable=False),  # "" outside experiments
    pa.field("arm", pa.string(), nullable=False),
    pa.field("rules", pa.list_(pa.string()), nullable=False),  # exposure rules named in the item's reasons
])
COLUMNS = tuple(SCHEMA.names)


@dataclass(frozen=True, slots=True)
class LogRecord:
    event_id: str
    member_id: str
    item_id: str
    event: str
    ts: int
    quantity: int = 1
    slot: str = ""
    position: int = -1
    request_id: str = ""
    source: str = ""
    model_version: str = ""
    rules_version: str = ""
    experiment: str = ""
    arm: str = ""
    rules: tuple[str, ...] = ()


def log_record(ev: Event) -> LogRecord:
    """The log record of an event TrackEvents accepted (checked and completed: id, ts, quantity)."""
    return LogRecord(ev.event_id, ev.member_id, ev.item_id, ev.event, int(ev.ts), ev.quantity, ev.slot,
                     request_id=ev.request_id)


def encode(r: LogRecord) -> str:
    """One record as the stream entry's text (the schema version first)."""
    return SEP.join((SCHEMA_VERSION, r.event_id, r.member_id, r.item_id, r.event, str(int(r.ts)),
                     str(int(r.quantity)), r.slot, str(int(r.position)), r.request_id, r.source,
                     r.model_version, r.rules_version, r.experiment, r.arm, LIST_SEP.join(r.rules)))


def decode(text: str) -> LogRecord:
    """The record ``encode`` wrote; ValueError for anything else (the sink counts and skips it)."""
    parts = text.split(SEP)
    if len(parts) != len(COLUMNS) + 1 or parts[0] != SCHEMA_VERSION:
        raise ValueError(f"not a {SCHEMA_VERSION} event log record: {text[:100]!r}")
    (_, event_id, member, item, event, ts, qty, slot, pos, request_id, source, model, rules_version,
     experiment, arm, rules) = parts
    return LogRecord(event_id, member, item, event, int(ts), int(qty), slot, int(pos), request_id, source,
                     model, rules_version, experiment, arm, tuple(rules.split(LIST_SEP)) if rules else ())


def decode_table(texts: Sequence[str]) -> tuple[pa.Table, int]:
    """Encoded records as one ``SCHEMA`` table, split and cast by Arrow column by column (the sink's
    hot path: no Python object per record), and how many texts were not records (skipped)."""
    import numpy as np
    import pyarrow.compute as pc

    width = len(COLUMNS) + 1
    parts = pc.split_pattern(pa.array(texts, pa.string()), SEP)
    ok = pc.and_(pc.equal(pc.list_value_length(parts), width),  # a split has at least one element
                 pc.equal(pc.list_element(parts, 0), SCHEMA_VERSION))
    parts = parts.filter(ok)
    n = len(parts)
    if n == 0:
        return SCHEMA.empty_table(), len(texts)
    flat = parts.flatten()
    arrays = []
    try:
        for k, f in enumerate(SCHEMA, start=1):
            col = flat.take(pa.array(np.arange(k, n * width, width)))
            if f.name == "rules":
                split = pc.split_pattern(col, LIST_SEP)
                empty = pa.array([[]] * n, f.type)
                arrays.append(pc.if_else(pc.equal(col, ""), empty, split))
            else:
                arrays.append(col.cast(f.type))
    except (pa.ArrowInvalid, ValueError):  # a number that does not parse: sort the rows out one by one
        good = []
        for t in texts:
            with contextlib.suppress(ValueError):
                good.append(decode(t))
        return to_table(good), len(texts) - len(good)
    return pa.Table.from_arrays(arrays, schema=SCHEMA), len(texts) - n


def to_table(records: Sequence[LogRecord]) -> pa.Table:
    """Records as an Arrow table of ``SCHEMA`` (column by column: no per-row dicts)."""
    rows = ((r.event_id, r.member_id, r.item_id, r.event, r.ts, r.quantity, r.slot, r.position,
             r.request_id, r.source, r.model_version, r.rules_version, r.experiment, r.arm,
             list(r.rules)) for r in records)
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if records else [[]] * len(COLUMNS)
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, SCHEMA, strict=True)],
                                schema=SCHEMA)


def day(ts: float) -> str:
    """The partition (UTC day) of a record's ``ts``: ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def partition_dir(log_dir: Path, date: str) -> Path:
    return log_dir / f"date={date}"


StreamId = tuple[int, int]


def sid(stream_id: str) -> StreamId:
    """A Redis stream id (``<ms>-<seq>``) as a comparable pair."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def part_range(path: Path) -> tuple[StreamId, StreamId] | None:
    """The stream-id range a ``part-<first>_<last>.parquet`` file holds; None for another name."""
    name = path.name
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    first, sep, last = name[5:-8].partition("_")
    try:
        lo, hi = sid(first), sid(last)
    except ValueError:
        return None
    return (lo, hi) if sep and lo <= hi else None


def covered_parts(paths: Iterable[Path]) -> set[Path]:
    """The parts (of one day folder) whose id range lies inside another file's range: a compaction
    wrote that file and was stopped before deleting them, so their rows are counted there."""
    ranged = sorted(((r, p) for p in paths if (r := part_range(p)) is not None),
                    key=lambda rp: (rp[0][0], (-rp[0][1][0], -rp[0][1][1]), rp[1].name))
    out: set[Path] = set()
    widest: StreamId | None = None  # the highest last id of the files starting at or before this one
    for (_, last), p in ranged:
        if widest is not None and last <= widest:
            out.add(p)
        else:
            widest = last
    return out


def day_parts(folder: Path) -> list[Path]:
    """A day folder's part files in stream order (so rows read the same before and after a
    compaction), without those ``covered_parts`` finds; other names last, by name."""
    parts = [p for p in folder.glob("part-*.parquet") if p.is_file()]
    covered = covered_parts(parts)
    last: tuple[StreamId, StreamId] = ((1 << 62, 0), (1 << 62, 0))
    return sorted((p for p in parts if p not in covered), key=lambda p: (part_range(p) or last, p.name))


def log_files(log_dir: Path, since: float | None = None) -> list[Path]:
    """The log's Parquet files, oldest day first; with ``since`` (epoch seconds) only the days from
    ``since``'s day on (filter on ``ts`` too for an exact window). A part a compaction's file already
    holds is left out (``covered_parts``), so no reader counts its rows twice."""
    first = day(since) if since is not None else ""
    out: list[Path] = []
    for part in sorted(log_dir.glob("date=*")):
        if part.is_dir() and part.name[5:] >= first:
            out += day_parts(part)
    return out


R = TypeVar("R")
#: Listings a reader tries before it gives up on a log whose files keep changing under it.
LISTINGS = 5


def with_log_files(log_dir: Path, read: Callable[[list[Path]], R], since: float | None = None) -> R:
    """``read(files)`` over the log's files (``log_files``). A compaction may replace some of them
    between the listing and the read (it renames its file in, then deletes the parts): when the read
    fails and a listed file is gone, the log is listed again and read again, so the rows come from
    the compacted file instead, once each."""
    for attempt in range(LISTINGS):
        files = log_files(log_dir, since)
        try:
            return read(files)
        except Exception:
            if attempt + 1 < LISTINGS and not all(f.exists() for f in files):
                continue
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def is_log_dir(path: Path) -> bool:
    """A folder of the event log (has ``date=`` partitions or the sink's state), not an events file."""
    return path.is_dir() and (any(path.glob("date=*")) or (path / "_sink").is_dir())


def read_log(log_dir: Path, since: float | None = None, columns: Iterable[str] | None = None,
             events: Iterable[str] | None = None) -> pa.Table:
    """The log as one table (``SCHEMA``'s columns, or ``columns``), records with ``ts >= since`` and
    of the ``events`` kinds when given. Empty table when there is nothing yet."""
    import pyarrow.dataset as pads

    names = list(columns) if columns is not None else list(COLUMNS)
    where = None
    if since is not None:
        where = pads.field("ts") >= int(since)
    if events is not None:
        kinds = pads.field("event").isin(list(events))
        where = kinds if where is None else where & kinds

    def read(files: list[Path]) -> pa.Table:
        if not files:
            return SCHEMA.empty_table().select(names)
        # one dataset over every part file: read in parallel, filtered while scanning
        return pads.dataset([str(f) for f in files], format="parquet", schema=SCHEMA).to_table(
            columns=names, filter=where)

    return with_log_files(log_dir, read, since)
