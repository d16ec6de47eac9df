"""Reading and validating input files (events, items, members, holdout pairs; CSV or Parquet) and
the service's event log, one source or several combined, optionally windowed by ``since``.

This is the data contract. A bad row is never dropped silently: it is counted by reason, up to five
examples say ``file:LINE:column: why``, and when bad rows are more than ``max_bad_share`` of a file
the run stops (a model trained on a half-broken export is worse than no new model). Structural
problems (missing file or column, duplicated ids, unreadable CSV) stop it at once. Rows that are
not bad but not for training (exposure records, events before ``since``) are left out and counted.

Everything is vectorised with pyarrow: ids become int32 codes through ``dictionary_encode``, values
are cast column-wise, and Python only loops over the few rows quoted in messages, so 10M events read
in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from service.model_bundle import EVENT_TYPES, ItemTable, MemberTable
from training import columns as col
from training.columns import Parsed
from training.dataset import Dataset, Interactions
from training.input_files import (
    EXPOSURE,
    MAX_EXAMPLES,
    InputError,
    InputFile,
    LogInput,
    Sources,
    describe_time,
    open_events,
)

log = logging.getLogger(__name__)
# --------------------------------------------------------------------------- checks and reports


class _Checks:
    """Bad rows by reason (each row counted once, under its first problem), with examples."""

    def __init__(self, src: InputFile | LogInput):
        self.src = src
        self.bad = np.zeros(src.n, dtype=bool)
        self.out = np.zeros(src.n, dtype=bool)  # left out: not bad, not for training either
        self.counts: dict[str, int] = {}
        self.left_out: dict[str, int] = dict(src.left_out)
        self._examples: list[tuple[str, np.ndarray, str, list[str]]] = []

    def leave_out(self, reason: str, mask: np.ndarray) -> None:
        """Rows outside what we train on: counted by reason, never checked nor counted as bad."""
        new = mask & ~self.out & ~self.bad
        if k := int(new.sum()):
            self.out |= new
            self.left_out[reason] = self.left_out.get(reason, 0) + k

    def reject(self, reason: str, mask: np.ndarray, column: str, why: Callable[[Any], str]) -> None:
        new = mask & ~self.bad & ~self.out
        if k := int(new.sum()):
            self.bad |= new
            self.counts[reason] = self.counts.get(reason, 0) + k
            rows = np.flatnonzero(new)[:MAX_EXAMPLES]
            raw = self.src.table.column(column).take(pa.array(rows)).to_pylist()
            self._examples.append((reason, rows, column, [why(v) for v in raw]))

    def report(self, max_bad_share: float = 1.0, **extra: Any) -> dict[str, Any]:
        """The file's report (with ``extra`` keys); InputError when bad rows are more than
        ``max_bad_share``."""
        rows = [r for _, rs, _, _ in self._examples for r in rs]
        places = iter(self.src.where(np.array(rows, dtype=np.int64)))
        examples: dict[str, list[str]] = {}
        for reason, _, column, whys in self._examples:
            examples.setdefault(reason, []).extend(f"{next(places)}:{column}: {w}" for w in whys)
        n, n_bad = self.src.n - int(self.out.sum()), int(self.bad.sum())  # bad share: of rows in scope
        report = {"file": self.src.name, "format": self.src.fmt, "rows_read": self.src.rows_read,
                  "rows_kept": n - n_bad, "rejected": dict(self.counts),
                  "examples": {k: v[:MAX_EXAMPLES] for k, v in examples.items()}}
        if self.left_out:
            report["left_out"] = dict(self.left_out)
        report.update(extra)
        if n and n_bad / n > max_bad_share:
            raise InputError(f"{self.src.name}: {n_bad:,} of {n:,} rows ({n_bad / n:.2%}) are bad, more "
                             f"than max_bad_share {max_bad_share:.2%}: fix them or raise "
                             f"input.max_bad_share\n" + format_report(report))
        if n_bad:
            log.warning("%s", format_report(report))
        return report

    def parse(self, name: str, parse: Callable[[pa.ChunkedArray], Parsed],
              good: Callable[[np.ndarray], np.ndarray | bool], default: Any, why: str, required: bool = False,
              parsed: Parsed | None = None) -> np.ndarray:
        """Column ``name`` parsed (or ``parsed``, already); blank -> ``default`` (or rejected when
        required); values that do not parse or fail ``good`` are rejected as ``bad_<name>``."""
        a = self.src.column(name)
        if a is None:
            return np.full(self.src.n, default)
        v, ok, blank = parsed or parse(a)
        ok &= good(np.where(ok, v, default))
        self.reject(f"bad_{name}", ~ok & (required | ~blank), name,
                    lambda x: f"{name} is empty" if not str(x or "").strip() else f"{name} {x!r} {why}")
        return np.where(ok, v, default)


def format_report(report: dict[str, Any]) -> str:
    """What was read, left out and rejected, as lines a person reads (one file's report or
    load_dataset's, which has one part per source when there are several)."""
    if "sources" in report:
        lines = [format_report(s) for s in report["sources"]]
        lines.append(f"all {len(report['sources'])} sources: {report['rows_read']:,} rows read, "
                     f"{report['rows_kept']:,} kept")
        lines += [f"  note: {note}" for note in report.get("notes", [])]
    else:
        lines = _source_lines(report)
    for key in ("unknown_member", "unknown_item"):
        if report.get(key, {}).get("count"):
            u = report[key]
            lines.append(f"  {key}: {u['count']:,} row(s) naming {u['ids']:,} unknown id(s), skipped")
            lines += [f"    {e}" for e in u["examples"]]
    if "rows_used" in report:
        lines.append(f"  rows used: {report['rows_used']:,}")
    lines += [format_report(report[k]) for k in ("items", "members") if report.get(k)]
    return "\n".join(lines)


def _source_lines(report: dict[str, Any]) -> list[str]:
    rejected, left = sum(report.get("rejected", {}).values()), report.get("left_out", {})
    name = report["file"] + (f" ({report['parts']:,} part files)" if "parts" in report else "")
    lines = [f"{name}: {report['rows_read']:,} rows read, {report['rows_kept']:,} kept"
             + (f", {sum(left.values()):,} left out" if left else "")
             + (f", {rejected:,} rejected" if rejected else "")]
    if exposure := [f"{left[k]:,} {k}" for k in EXPOSURE if left.get(k)]:
        lines.append(f"  left out, not behaviour (never in the confidence matrix): {', '.join(exposure)}")
    if left.get("before_since"):
        skipped = " (earlier days' part files are not read)" if report["format"] == LogInput.fmt else ""
        lines.append(f"  left out, before --since {describe_time(report['since'])}: "
                     f"{left['before_since']:,}{skipped}")
    for reason, count in report.get("rejected", {}).items():
        lines += [f"  {reason}: {count:,}"] + [f"    {e}" for e in report["examples"].get(reason, [])]
    return lines


def _strings(src: InputFile, name: str, lower: bool = False) -> np.ndarray:
    if (a := src.column(name)) is None:
        return np.full(src.n, "", dtype=object)
    s = pc.utf8_trim_whitespace(pc.replace_substring_regex(col.as_text(a), r"\s+", " "))
    return col.to_numpy(pc.utf8_lower(s) if lower else s, "").astype(object)


def _lookup(ids: pa.Array | np.ndarray, known: np.ndarray) -> np.ndarray:
    """Position of each id in ``known`` (-1 when absent), hashed by Arrow."""
    return col.to_numpy(pc.index_in(pa.array(ids, pa.string()), value_set=pa.array(known, pa.string())), -1)


def _id_column(src: InputFile | LogInput, checks: _Checks, column: str, unique: bool = False,
               encoded: tuple[np.ndarray, pa.Array] | None = None) -> tuple[np.ndarray, pa.Array]:
    """``encoded``: the column's `col.encode_ids`, when the caller already ran it (on a thread)."""
    codes, dictionary = encoded or col.encode_ids(src.table.column(column))
    if unique:  # a duplicated catalogue id is structural (which row is right?): fail naming both
        valid = np.flatnonzero(codes >= 0)
        order = valid[np.argsort(codes[valid], kind="stable")]
        if len(dup := np.flatnonzero(codes[order][1:] == codes[order][:-1])):
            i = int(np.argmin(order[dup + 1]))
            first, second = src.where(np.array([order[dup[i]], order[dup[i] + 1]]))
            value = dictionary[int(codes[order[dup[i]]])].as_py()
            raise InputError(f"{second}:{column}: duplicated {column} {value!r}, already on "
                             f"{first} ({len(dup):,} duplicated row(s) in all)")
    checks.reject("empty_id", codes < 0, column, lambda v: f"{column} is empty")
    return codes, dictionary


# --------------------------------------------------------------------------- public readers


def _events(path: str | Path, max_bad_share: float, since: int | None = None
            ) -> tuple[Interactions, np.ndarray, InputFile | LogInput]:
    """read_events, plus each kept event's 0-based row in the source's table and the source (for
    messages)."""
    src = open_events(path, since)
    if src.n == 0:
        raise InputError(_no_events(src, since))
    checks = _Checks(src)
    # Arrow hashes the two id columns without the GIL: side by side they take the time of one
    with ThreadPoolExecutor(1) as pool:
        items_encoded = pool.submit(col.encode_ids, src.table.column("item_id"))
        ev = col.encode_words(src.table.column("event"))
        words = [str(w).strip().lower() for w in ev.dictionary.to_pylist()]
        codes = col.to_numpy(ev.indices, len(words))
        lut = np.array([EVENT_TYPES.index(w) if w in EVENT_TYPES else 255 for w in words] + [255], np.uint8)
        exposure = np.array([EXPOSURE.index(w) if w in EXPOSURE else -1 for w in words] + [-1])[codes]
        for k, kind in enumerate(EXPOSURE):  # a file may hold log records too: never behaviour
            checks.leave_out(kind, exposure == k)
        times = col.parse_time(src.table.column("ts"))
        if since is not None:
            checks.leave_out("before_since", times[1] & (times[0] < since))
        if checks.out.all():
            items_encoded.cancel()
            raise InputError(_no_events(src, since))
        member, member_dict = _id_column(src, checks, "member_id")
        item, item_dict = _id_column(src, checks, "item_id", encoded=items_encoded.result())
    event = lut[codes]
    checks.reject("unknown_event", event == 255, "event",
                  lambda v: f"unknown event {v!r} (expected one of {', '.join(EVENT_TYPES)})")
    ts = checks.parse("ts", col.parse_time, lambda v: (v >= 0) & (v < 10**11), 0,
                      "is not a time (unix seconds, not milliseconds, or ISO-8601)", required=True,
                      parsed=times)
    quantity = None
    if src.column("quantity") is not None:
        quantity = checks.parse("quantity", col.parse_number, lambda v: v > 0, 1.0,
                                "is not a positive number")
    extra: dict[str, Any] = {"since": since} if since is not None else {}
    if isinstance(src, LogInput):
        extra["parts"] = len(src.files)
    report = checks.report(max_bad_share, **extra)
    clean = report["rows_kept"] == src.n
    keep = np.arange(src.n) if clean else np.flatnonzero(~checks.bad & ~checks.out)
    member, member_ids = col.compact_ids(member if clean else member[keep], member_dict, clean)
    item, item_ids = col.compact_ids(item if clean else item[keep], item_dict, clean)
    if not clean:
        event, ts = event[keep], ts[keep]
        quantity = None if quantity is None else quantity[keep]
    return Interactions(member=member, item=item, event=event, ts=ts, member_ids=member_ids,
                        item_ids=item_ids, report=report,
                        quantity=None if quantity is None else quantity.astype(np.float32)), keep, src


def _no_events(src: InputFile | LogInput, since: int | None) -> str:
    """Why a source gave nothing to train on: the window, or nothing but exposure records."""
    window = f" since {describe_time(since)}" if since is not None else ""
    if isinstance(src, LogInput):
        return f"{src.name}: no behaviour events{window} ({src.records():,} records in the log)"
    return f"{src.name}: no behaviour events{window} ({src.n:,} row{'s' * (src.n != 1)} in the file)"


def read_events(path: str | Path, *, max_bad_share: float = 0.01, since: int | None = None) -> Interactions:
    """Events file or log folder -> Interactions in its own id space (ids in order of first
    appearance); with ``since`` (epoch seconds) only events at or after it."""
    return _events(path, max_bad_share, since)[0]


def _items(path: str | Path, max_bad_share: float) -> tuple[ItemTable, dict[str, Any]]:
    src = InputFile(path, "items")
    checks = _Checks(src)
    codes, dictionary = _id_column(src, checks, "item_id", unique=True)
    price = checks.parse("price", col.parse_number, lambda v: v >= 0, np.nan, "is not a number >= 0")
    stock = checks.parse("stock", col.parse_number, lambda v: col.is_whole(v) & (v >= -1), -1,
                         "is not a whole number >= 0 (-1 = unknown)").astype(np.int64)
    on_shelf = checks.parse("on_shelf", col.parse_bool, lambda v: True, True,
                            "is not true/false/1/0/yes/no/y/n")
    launched = checks.parse("launched_at", col.parse_time, lambda v: v >= -1, -1,
                            "is not a time (unix seconds or ISO-8601)").astype(np.int64)
    report = checks.report(max_bad_share)
    keep = ~checks.bad
    ids = dictionary.to_numpy(zero_copy_only=False).astype(object)
    return ItemTable(item_id=ids[codes[keep]], category=_strings(src, "category")[keep],
                     brand=_strings(src, "brand")[keep], price=price[keep].astype(np.float64),
                     stock=stock[keep], on_shelf=on_shelf[keep].astype(bool), launched_at=launched[keep],
                     tags=_strings(src, "tags")[keep]), report


def read_items(path: str | Path, *, max_bad_share: float = 0.01) -> ItemTable:
    """Catalogue file -> ItemTable in file order (the item id space). Empty cells mean unknown."""
    return _items(path, max_bad_share)[0]


def _members(path: str | Path, max_bad_share: float) -> tuple[MemberTable, dict[str, Any]]:
    src = InputFile(path, "members")
    checks = _Checks(src)
    codes, dictionary = _id_column(src, checks, "member_id", unique=True)
    points = checks.parse("points", col.parse_number, lambda v: True, np.nan, "is not a number")
    report = checks.report(max_bad_share)
    keep = ~checks.bad
    ids = dictionary.to_numpy(zero_copy_only=False).astype(object)
    return MemberTable(member_id=ids[codes[keep]], tier=_strings(src, "tier", lower=True)[keep],
                       points=points[keep].astype(np.float64)), report


def read_members(path: str | Path, *, max_bad_share: float = 0.01) -> MemberTable:
    """Members file -> MemberTable in file order; tiers lower-cased, join time not used."""
    return _members(path, max_bad_share)[0]


def _unknown(src: InputFile | LogInput | Sources, rows: np.ndarray, codes: np.ndarray, ids: np.ndarray,
             column: str, why: str) -> dict[str, Any]:
    """Rows naming ids we do not know: count, distinct ids and examples (not bad rows)."""
    shown = src.where(rows[:MAX_EXAMPLES])
    return {"count": len(rows), "ids": len(np.unique(codes)),
            "examples": [f"{p}:{column}: {column} {ids[c]!r} {why}"
                         for p, c in zip(shown, codes, strict=False)]}


def _combine(parts: list[tuple[Interactions, np.ndarray, InputFile | LogInput]]
             ) -> tuple[Interactions, np.ndarray, Sources]:
    """Several sources' events as one, in source order, in a union id space; rows are numbered
    across the sources. Nothing is deduplicated: the report notes sources whose times overlap."""
    evs, srcs = [p[0] for p in parts], Sources([p[2] for p in parts])
    member, member_ids = col.merge_ids([e.member for e in evs], [e.member_ids for e in evs])
    item, item_ids = col.merge_ids([e.item for e in evs], [e.item_ids for e in evs])
    quantity = None if all(e.quantity is None for e in evs) else np.concatenate(
        [np.ones(len(e), np.float32) if e.quantity is None else e.quantity for e in evs])
    sources = [e.report for e in evs]
    report: dict[str, Any] = {"file": srcs.name, "format": "sources", "examples": {}, "sources": sources,
                              "notes": [], "rows_read": sum(r["rows_read"] for r in sources),
                              "rows_kept": sum(r["rows_kept"] for r in sources)}
    for key in ("rejected", "left_out"):
        report[key] = {k: sum(r.get(key, {}).get(k, 0) for r in sources)
                       for k in dict.fromkeys(k for r in sources for k in r.get(key, {}))}
    spans = [(int(e.ts.min()), int(e.ts.max()), e.report["file"]) for e in evs if len(e)]
    for i, (lo_a, hi_a, a) in enumerate(spans):
        for lo_b, hi_b, b in spans[i + 1:]:
            if (lo := max(lo_a, lo_b)) < (hi := min(hi_a, hi_b)):
                report["notes"].append(f"{a} and {b} overlap from {describe_time(lo)} to {describe_time(hi)}:"
                                       f" an event in both is counted twice (end one where the other begins)")
    rows = np.concatenate([p[1] + start for p, start in zip(parts, srcs.starts, strict=False)])
    return Interactions(member=member, item=item, event=np.concatenate([e.event for e in evs]),
                        ts=np.concatenate([e.ts for e in evs]), member_ids=member_ids, item_ids=item_ids,
                        quantity=quantity, report=report), rows, srcs


def load_dataset(events: str | Path | Sequence[str | Path], items: str | Path,
                 members: str | Path | None = None, *, max_bad_share: float = 0.01,
                 since: int | None = None) -> Dataset:
    """Events, catalogue and members in one id space: items in catalogue order; members as they first
    appear in events, then those only in the members file. Events on items missing from the catalogue
    are counted and dropped, outside max_bad_share (a catalogue may lag the event log).

    ``events``: a file, the service's event log folder, or several of them, combined; ``since``
    (epoch seconds): only events at or after it, from every source."""
    paths = [events] if isinstance(events, str | Path) else list(events)
    if not paths:
        raise InputError("no events source given")
    with ThreadPoolExecutor(1) as pool:  # the members file is read while the events are
        members_read = pool.submit(_members, members, max_bad_share) if members is not None else None
        catalogue, items_report = _items(items, max_bad_share)
        parts = [_events(p, max_bad_share, since) for p in paths]
        ev, rows, src = parts[0] if len(parts) == 1 else _combine(parts)
        members_result = members_read.result() if members_read is not None else None
    item = _lookup(ev.item_ids, catalogue.item_id)[ev.item]
    unknown = np.flatnonzero(item < 0)
    report = dict(ev.report, items=items_report, members=None)
    report["unknown_item"] = _unknown(src, rows[unknown], ev.item[unknown], ev.item_ids, "item_id",
                                      f"is not in the catalogue {items}")
    if len(unknown) == len(ev):
        raise InputError(f"{src.name}: none of the {len(ev):,} events names an item of the catalogue "
                         f"{items} (ids must match exactly, as text)\n" + format_report(report))
    if len(unknown):  # else no copy of every column (large event files)
        ev, item = ev.subset(item >= 0), item[item >= 0]
    ev.item, ev.item_ids = item.astype(np.int32, copy=False), catalogue.item_id
    member_ids = ev.member_ids
    tier, points = np.full(len(member_ids), "", dtype=object), np.full(len(member_ids), np.nan)
    if members_result is not None:
        mt, report["members"] = members_result
        pos = _lookup(member_ids, mt.member_id)
        found = pos >= 0
        tier[found], points[found] = mt.tier[pos[found]], mt.points[pos[found]]
        only = np.ones(len(mt), dtype=bool)
        only[pos[found]] = False
        member_ids = np.concatenate([member_ids, mt.member_id[only]])
        tier, points = np.concatenate([tier, mt.tier[only]]), np.concatenate([points, mt.points[only]])
    ev.member_ids = member_ids
    ev.report = dict(report, rows_used=len(ev))
    return Dataset(events=ev, items=catalogue, members=MemberTable(member_ids, tier, points))


def read_pairs(path: str | Path, dataset: Dataset, *, report: dict[str, Any] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Holdout (member_id, item_id) file -> int32 codes in ``dataset``'s id space.

    Rows naming a member or item the dataset does not know are counted (in ``report`` when given,
    and the log) and skipped; InputError when no pair is left.
    """
    src = InputFile(path, "holdout")
    checks = _Checks(src)
    m_codes, m_dict = _id_column(src, checks, "member_id")
    i_codes, i_dict = _id_column(src, checks, "item_id")
    out = checks.report()
    m_pos = np.append(_lookup(m_dict, dataset.members.member_id), -1)[m_codes]
    i_pos = np.append(_lookup(i_dict, dataset.items.item_id), -1)[i_codes]
    bad_m = np.flatnonzero(~checks.bad & (m_pos < 0))
    bad_i = np.flatnonzero(~checks.bad & (m_pos >= 0) & (i_pos < 0))
    out["unknown_member"] = _unknown(src, bad_m, m_codes[bad_m], m_dict.to_pylist(), "member_id",
                                     "is not a member of the dataset")
    out["unknown_item"] = _unknown(src, bad_i, i_codes[bad_i], i_dict.to_pylist(), "item_id",
                                   "is not in the catalogue")
    keep = ~checks.bad & (m_pos >= 0) & (i_pos >= 0)
    out["rows_used"] = int(keep.sum())
    if report is not None:
        report.update(out)
    if not keep.any():
        raise InputError(f"{path}: no (member, item) pair left to evaluate\n" + format_report(out))
    if len(bad_m) or len(bad_i):
        log.warning("%s", format_report(out))
    return m_pos[keep].astype(np.int32), i_pos[keep].astype(np.int32)
