"""One input file read into Arrow (CSV or Parquet), with the columns its kind needs, and the
file locations (``file:LINE`` or ``file:row N``) that error messages quote. An events source may
also be the service's event log folder (``LogInput``), read the same way.

Structural problems stop the read at once with an InputError that names the file (and the line,
for CSV): unsupported type, missing or empty file, missing or repeated column, malformed lines,
text that is not UTF-8. Row-level checks live in training/events.py.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from service.errors import MallrecError
from service.eventlog.schema import BEHAVIOUR, LOG_EVENTS, SCHEMA, is_log_dir, with_log_files
from training import columns as col

MAX_EXAMPLES = 5
FORMATS = ((".csv.gz", "csv"), (".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet"))
_SPECS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind -> (required, optional)
    "events": (("member_id", "item_id", "event", "ts"), ("quantity",)),
    "items": (("item_id",), ("category", "brand", "price", "stock", "on_shelf", "launched_at", "tags")),
    "members": (("member_id",), ("tier", "points")),
    "holdout": (("member_id", "item_id"), ()),
}
#: Columns of a few distinct words, read as Arrow dictionaries: a large events file's `event` column
#: then costs no string per row and no hashing afterwards.
_WORDS: dict[str, tuple[str, ...]] = {"events": ("event",)}
#: Event log records that are not behaviour: counted in the report, never trained on.
EXPOSURE = tuple(e for e in LOG_EVENTS if e not in BEHAVIOUR)
#: Units of a span (`--since 90d`, `report --click-window 24h`): one grammar for every such flag.
SPANS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class InputError(MallrecError):
    """An input file we cannot train on; the message names the file, line and column."""


class InputFile:
    """One input file as an Arrow table of the columns we use (CSV: all text), and row locations."""

    def __init__(self, path: str | Path, kind: str):
        self.path, self.name, self.kind = Path(path), str(path), kind
        fmt = next((f for suffix, f in FORMATS if self.path.name.lower().endswith(suffix)), None)
        if fmt is None:
            raise InputError(f"{self.name}: unsupported file type (use .csv, .csv.gz, .parquet or .pq)")
        if not self.path.is_file():
            raise InputError(f"{self.name}: file not found")
        if self.path.stat().st_size == 0:
            raise InputError(f"{self.name}: empty file (expected a header line and data rows)")
        self.fmt = fmt
        self.table = self._read_csv() if fmt == "csv" else self._read_parquet()
        self.n = self.rows_read = self.table.num_rows
        self.left_out: dict[str, int] = {}  # rows dropped before the checks (the log's, not a file's)
        if self.n == 0:
            raise InputError(f"{self.name}: no data rows")

    def _wanted(self, found: list[str], where: str) -> list[str]:
        required, optional = _SPECS[self.kind]
        missing = [c for c in required if c not in found]
        if missing:
            raise InputError(f"{self.name}{where}: missing required column {missing[0]!r} in the "
                             f"{self.kind} file (columns found: {', '.join(found) or 'none'}; "
                             f"required: {', '.join(required)})")
        wanted = [c for c in required + optional if c in found]
        if dup := [c for c in wanted if found.count(c) > 1]:
            raise InputError(f"{self.name}{where}: column {dup[0]!r} appears twice in the header")
        return wanted

    def _read_csv(self) -> pa.Table:
        try:
            with _open_bytes(self.path) as f:
                header = next(csv.reader([f.readline().decode("utf-8-sig")]), [])
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as e:
            raise InputError(f"{self.name}:1: cannot read the header ({e}; save the file as UTF-8)") from e
        names = [h.strip().lower() for h in header]
        wanted = self._wanted(names, ":1")
        names = [n if n in wanted or n not in names[:i] else f"{n}~{i}" for i, n in enumerate(names)]
        bad: list[Any] = []  # the first malformed rows, then a count of them all
        count = [0]

        def on_invalid(row: Any) -> str:
            count[0] += 1
            if len(bad) < MAX_EXAMPLES:
                bad.append(row)
            return "skip"

        def read(threads: bool) -> pa.Table:
            return pacsv.read_csv(
                self.path, read_options=pacsv.ReadOptions(column_names=names, skip_rows=1,
                                                          use_threads=threads),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(
                    include_columns=wanted, column_types={c: self._text_type(c) for c in wanted},
                    strings_can_be_null=False, quoted_strings_can_be_null=False))

        try:
            table = read(True)
            if bad and bad[0].number is None:  # threaded reads do not know the line: read again
                bad.clear()
                count[0] = 0
                read(False)
        except (pa.ArrowInvalid, OSError, EOFError) as e:
            if "UTF8" in str(e):
                raise InputError(f"{self.name}:{_bad_utf8_line(self.path)}: text is not UTF-8 "
                                 f"(save the file as UTF-8, e.g. not GBK)") from e
            raise InputError(f"{self.name}: cannot read CSV ({e})") from e
        if bad:
            more = "".join(f"\n  {self.name}:{r.number}: {r.actual_columns} fields" for r in bad[1:])
            raise InputError(f"{self.name}:{bad[0].number}: expected {bad[0].expected_columns} fields, "
                             f"found {bad[0].actual_columns}: {bad[0].text[:200]!r} ({count[0]:,} malformed "
                             f"line(s); quote fields that contain commas){more}")
        return table

    def _read_parquet(self) -> pa.Table:
        try:
            pf = pq.ParquetFile(self.path)
            schema = pf.schema_arrow
            found = {n.strip().lower(): n for n in schema.names}
            wanted = self._wanted(list(found), "")
            words = [found[c] for c in wanted if c in _WORDS.get(self.kind, ())
                     and pa.types.is_string(schema.field(found[c]).type)]
            if words:
                pf = pq.ParquetFile(self.path, read_dictionary=words)
            return pf.read(columns=[found[c] for c in wanted]).rename_columns(wanted)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"{self.name}: cannot read Parquet ({e})") from e

    def _text_type(self, column: str) -> pa.DataType:
        return pa.dictionary(pa.int32(), pa.string()) if column in _WORDS.get(self.kind, ()) else pa.string()

    def column(self, name: str) -> pa.ChunkedArray | None:
        return self.table.column(name) if name in self.table.column_names else None

    def where(self, rows: np.ndarray) -> list[str]:
        """``file:LINE`` (CSV, header = line 1) or ``file:row N`` (Parquet) of 0-based data rows."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.fmt == "parquet" or not len(rows):
            return [f"{self.name}:row {r + 1}" for r in rows]
        return [f"{self.name}:{line}" for line in _csv_lines(self.path, rows)]


#: The log's columns that training reads; nullable, so a part file that lacks one still reads (its
#: rows then fail the row checks) rather than failing the whole log.
_LOG_SCHEMA = pa.schema([pa.field(c, pa.dictionary(pa.int32(), pa.string()) if c == "event"
                                  else SCHEMA.field(c).type) for c in sum(_SPECS["events"], ())])


class LogInput:
    """The service's event log folder as one events table, like ``InputFile``'s.

    Only what training may use reaches the table: records of the window (``ts >= since``) that are
    not exposure (``impression``, ``served``); the rest are counted in ``left_out``. An unknown event
    stays, for the row checks to reject. The part files are scanned as one dataset (many small files
    read in parallel, not one by one) and filtered batch by batch, so exposure records, usually most
    of the log, are never held in memory. Rows are named ``<part file>:row N`` like Parquet rows.
    """

    kind, fmt = "events", "event log"

    def __init__(self, path: str | Path, since: int | None = None):
        import pyarrow.dataset as pds

        self.path, self.name, self.since = Path(path), str(path), since
        if not is_log_dir(self.path):
            raise InputError(f"{self.name}: a folder but not an event log (no date=YYYY-MM-DD partitions): "
                             f"--events takes an events file or the service's event log folder")
        fmt = pds.ParquetFileFormat(read_options=pds.ParquetReadOptions(dictionary_columns=["event"]))
        self.files: list[Path] = []
        self.left_out: dict[str, int] = {}
        self.rows_read = 0

        def scan(files: list[Path]) -> list[pa.RecordBatch]:
            """Every kept row of ``files`` (a fresh count each time: a compaction may make it start over)."""
            self.files, self.rows_read = files, 0
            self.left_out.clear()
            self._kept = np.zeros(len(files), dtype=np.int64)  # rows each part file gave the table
            batches = []
            data = pds.dataset([str(f) for f in files], format=fmt, schema=_LOG_SCHEMA)
            for batch in data.to_batches(columns=[*_LOG_SCHEMA.names, "__fragment_index"]):
                keep = self._keep(batch.column("event"), batch.column("ts"), count=True)
                self.rows_read += batch.num_rows
                part = col.to_numpy(batch.column("__fragment_index"), 0)[keep]
                self._kept += np.bincount(part, minlength=len(files))
                if keep.any():
                    batches.append(batch.select(_LOG_SCHEMA.names).filter(pa.array(keep)))
            return batches

        try:
            batches = with_log_files(self.path, scan, since)
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"{self.name}: cannot read the event log ({e})") from e
        self.table = pa.Table.from_batches(batches, schema=_LOG_SCHEMA)
        self.n = self.table.num_rows

    def _keep(self, event: pa.Array | pa.ChunkedArray, ts: pa.Array | pa.ChunkedArray,
              count: bool = False) -> np.ndarray:
        """Rows of the window that are not exposure; ``count``: add the others to ``left_out``."""
        words = col.encode_words(event if isinstance(event, pa.ChunkedArray) else pa.chunked_array([event]))
        kinds = [str(w).strip().lower() for w in words.dictionary.to_pylist()]
        lut = np.array([EXPOSURE.index(k) if k in EXPOSURE else -1 for k in kinds] + [-1], dtype=np.int8)
        exposure = lut[col.to_numpy(words.indices, len(kinds))]
        recent = (np.ones(len(exposure), dtype=bool) if self.since is None
                  else col.to_numpy(ts, np.iinfo(np.int64).max) >= self.since)
        if count:
            if old := int((~recent).sum()):
                self.left_out["before_since"] = self.left_out.get("before_since", 0) + old
            for k, n in enumerate(np.bincount(exposure[recent & (exposure >= 0)], minlength=len(EXPOSURE))):
                if n:
                    self.left_out[EXPOSURE[k]] = self.left_out.get(EXPOSURE[k], 0) + int(n)
        return recent & (exposure < 0)

    def column(self, name: str) -> pa.ChunkedArray | None:
        return self.table.column(name)

    def where(self, rows: np.ndarray) -> list[str]:
        """``part file:row N`` of rows of the table: the file's kept rows are found again by reading
        its event and ts columns (only for the few rows a message quotes)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(self._kept)))
        part = np.searchsorted(starts, rows, side="right") - 1
        out = [""] * len(rows)
        for f in np.unique(part):
            t = pq.read_table(self.files[f], columns=["event", "ts"])
            kept = np.flatnonzero(self._keep(t.column("event"), t.column("ts")))
            for i in np.flatnonzero(part == f):
                out[i] = f"{self.files[f]}:row {kept[rows[i] - starts[f]] + 1}"
        return out

    def records(self) -> int:
        """Records in the whole log, every kind and day (read from the part files' footers)."""
        return with_log_files(self.path, lambda files: sum(pq.read_metadata(f).num_rows for f in files))


class Sources:
    """Several events sources as one for messages: rows numbered across them, in order."""

    def __init__(self, srcs: list[InputFile | LogInput]):
        self.srcs, self.name = srcs, " + ".join(s.name for s in srcs)
        self.starts = np.cumsum([0] + [s.n for s in srcs])

    def where(self, rows: np.ndarray) -> list[str]:
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        out = [""] * len(rows)
        for i in np.unique(which):
            at = np.flatnonzero(which == i)
            for j, place in zip(at, self.srcs[i].where(rows[at] - self.starts[i]), strict=True):
                out[j] = place
        return out


def open_events(path: str | Path, since: int | None = None) -> InputFile | LogInput:
    """An events source: a file, or the service's event log folder (only the log reads ``since``
    here; a file's rows are windowed after their ts is parsed)."""
    if Path(path).is_dir():
        return LogInput(path, since)
    if not Path(path).exists() and not any(str(path).lower().endswith(s) for s, _ in FORMATS):
        raise InputError(f"{path}: no such file or folder (--events takes an events file or the "
                         f"service's event log folder)")
    return InputFile(path, "events")


def parse_since(text: str, now: float | None = None) -> int:
    """``--since``: a span back from now (``90d``, ``24h``, ``2w``) or an ISO date or time (UTC when it
    names no zone) -> epoch seconds."""
    t = text.strip()
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", t.lower()):
        return int((time.time() if now is None else now) - float(m[1]) * SPANS[m[2]])
    if t:
        v, ok = col.parse_iso(pa.array([t]))
        if ok[0]:
            return int(v[0])
    raise InputError(f"--since {text!r}: not a span or a date (use e.g. 90d, 24h, 2w, 2026-09-04 or "
                     f"2026-09-04T12:00:00+08:00)")


def describe_time(ts: int) -> str:
    """``2026-09-04`` at midnight UTC, else ``2026-09-04 13:27 UTC``: how messages name a time."""
    return time.strftime("%Y-%m-%d" if ts % 86400 == 0 else "%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _open_bytes(path: Path) -> gzip.GzipFile | io.BufferedReader:
    return gzip.open(path) if path.name.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115


def _bad_utf8_line(path: Path) -> int:
    """Line of the first byte that is not UTF-8 (only called once pyarrow has refused the file)."""
    decoder, line = codecs.getincrementaldecoder("utf-8-sig")(), 1
    with _open_bytes(path) as f:
        while block := f.read(1 << 24):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                return line + block.count(b"\n", 0, max(e.start, 0))
            line += block.count(b"\n")
    return line


def _csv_lines(path: Path, rows: np.ndarray) -> np.ndarray:
    """File line (1-based) of 0-based data rows, counted as pyarrow does (blank lines skipped).

    Reads only up to the last row asked for; numpy when no field is quoted, else the csv module
    (slower, but only for the handful of rows a message quotes).
    """
    need = int(rows.max()) + 2  # header + rows
    parts, newlines = [], 0
    with _open_bytes(path) as f:
        while newlines < need and (block := f.read(1 << 24)):
            parts.append(block)
            newlines += block.count(b"\n")
    buf = b"".join(parts)
    if b'"' not in buf:
        data = np.frombuffer(buf, dtype=np.uint8)
        ends = np.append(np.flatnonzero(data == 10), len(data))
        starts = np.concatenate(([0], ends[:-1] + 1))
        blank = (ends == starts) | ((ends == starts + 1) & (data[np.minimum(starts, len(data) - 1)] == 13))
        lines = np.flatnonzero(~blank) + 1
        if len(lines) >= need:
            return lines[rows + 1]
    found, record, prev = {}, -1, 0
    with io.TextIOWrapper(_open_bytes(path), encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        for fields in reader:
            start, prev = prev + 1, reader.line_num
            if fields:
                record += 1
                found[record] = start
            if record >= need - 1:
                break
    return np.array([found.get(int(r) + 1, int(r) + 2) for r in rows])
