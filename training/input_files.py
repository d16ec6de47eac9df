"""One input file read into Arrow (CSV or Parquet), with the columns its kind needs, and the
file locations (``file:LINE`` or ``file:row N``) that error messages quote.

Structural problems stop the read at once with an InputError that names the file (and the line,
for CSV): unsupported type, missing or empty file, missing or repeated column, malformed lines,
text that is not UTF-8. Row-level checks live in training/events.py.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from service.errors import MallrecError

MAX_EXAMPLES = 5
_FORMATS = ((".csv.gz", "csv"), (".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet"))
_SPECS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind -> (required, optional)
    "events": (("member_id", "item_id", "event", "ts"), ("quantity",)),
    "items": (("item_id",), ("category", "brand", "price", "stock", "on_shelf", "launched_at", "tags")),
    "members": (("member_id",), ("tier", "points")),
    "holdout": (("member_id", "item_id"), ()),
}
#: Columns of a few distinct words, read as Arrow dictionaries: 10M events' `event` column costs no
#: string per row and no hashing afterwards (0.2 s less before training can start).
_WORDS: dict[str, tuple[str, ...]] = {"events": ("event",)}


class InputError(MallrecError):
    """An input file we cannot train on; the message names the file, line and column."""


class InputFile:
    """One input file as an Arrow table of the columns we use (CSV: all text), and row locations."""

    def __init__(self, path: str | Path, kind: str):
        self.path, self.name, self.kind = Path(path), str(path), kind
        fmt = next((f for suffix, f in _FORMATS if self.path.name.lower().endswith(suffix)), None)
        if fmt is None:
            raise InputError(f"{self.name}: unsupported file type (use .csv, .csv.gz, .parquet or .pq)")
        if not self.path.is_file():
            raise InputError(f"{self.name}: file not found")
        if self.path.stat().st_size == 0:
            raise InputError(f"{self.name}: empty file (expected a header line and data rows)")
        self.fmt = fmt
        self.table = self._read_csv() if fmt == "csv" else self._read_parquet()
        self.n = self.table.num_rows
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


def _open_bytes(path: Path) -> io.BufferedIOBase:
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
