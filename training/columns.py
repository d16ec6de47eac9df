"""Column parsers for input files: text, numbers, timestamps, booleans and ids, all vectorised.

Each parser returns values plus masks of what parsed and what was blank, so `training.events` can
count and quote bad rows without a Python loop per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BOOLS = {"true": 1, "t": 1, "1": 1, "yes": 1, "y": 1, "false": 0, "f": 0, "0": 0, "no": 0, "n": 0}
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M%z", "%Y-%m-%d %H:%M",
                 "%Y-%m-%d")
Parsed = tuple[np.ndarray, np.ndarray, np.ndarray]  # values, parsed ok, blank (null or whitespace)


def is_text(a: pa.ChunkedArray) -> bool:
    t = a.type.value_type if pa.types.is_dictionary(a.type) else a.type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def as_text(a: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(a.type):
        a = a.cast(a.type.value_type)
    return a if pa.types.is_string(a.type) else a.cast(pa.string())


def to_numpy(a: pa.ChunkedArray | pa.Array, fill: Any) -> np.ndarray:
    return (pc.fill_null(a, fill) if a.null_count else a).to_numpy(zero_copy_only=False)


def try_cast(a: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> pa.ChunkedArray | None:
    """Whole-column cast, or None when some value does not fit. Cast in 64k-row pieces: Arrow is
    slow to refuse one big array, quick to refuse a small piece."""
    chunks = a.chunks if isinstance(a, pa.ChunkedArray) else [a]
    pieces = [c.slice(i, 1 << 16) for c in chunks for i in range(0, len(c), 1 << 16)]
    try:
        return pc.cast(pa.chunked_array(pieces, a.type), typ)
    except pa.ArrowInvalid:
        return None


def parse_number(a: pa.ChunkedArray) -> Parsed:
    """Float64. Clean text is cast in one go; otherwise checked by regex, then cast."""
    if not is_text(a):
        v = to_numpy(pc.cast(a, pa.float64()), np.nan)
        return v, np.isfinite(v), to_numpy(pc.is_null(a), True)
    if (got := try_cast(a, pa.float64())) is not None:
        v = got.to_numpy(zero_copy_only=False)
        return v, np.isfinite(v), np.zeros(len(v), dtype=bool)
    t = pc.utf8_trim_whitespace(as_text(a)).combine_chunks()
    valid = to_numpy(pc.match_substring_regex(t, NUMBER), False)
    v = pc.cast(pc.if_else(pa.array(valid), t, "nan"), pa.float64()).to_numpy(zero_copy_only=False)
    return v, valid & np.isfinite(v), to_numpy(pc.equal(t, ""), True)


def is_whole(v: np.ndarray) -> np.ndarray:
    return np.isfinite(v) & (v == np.round(v))


def parse_time(a: pa.ChunkedArray) -> Parsed:
    """Int64 unix seconds from integer seconds or ISO-8601 text (naive = UTC), or a timestamp column."""
    if pa.types.is_timestamp(a.type) or pa.types.is_date(a.type):
        a = pc.cast(pc.cast(a, pa.timestamp("s", getattr(a.type, "tz", None)), safe=False), pa.int64())
    if pa.types.is_integer(a.type):
        blank = to_numpy(pc.is_null(a), True)
        return to_numpy(pc.cast(a, pa.int64()), 0), ~blank, blank
    if not is_text(a):
        v, ok, blank = parse_number(a)
        ok &= is_whole(v)
        return np.where(ok, v, 0).astype(np.int64), ok, blank
    if (got := try_cast(a, pa.int64())) is not None:  # the common case: all integers
        v = got.to_numpy(zero_copy_only=False)
        return v, np.ones(len(v), dtype=bool), np.zeros(len(v), dtype=bool)
    s = pc.utf8_trim_whitespace(as_text(a)).combine_chunks()
    s = pc.replace_substring_regex(s, r"^([+-]?\d{1,18})\.0*$", r"\1")  # "1793500000.0" from pandas
    blank = to_numpy(pc.equal(s, ""), True)
    ok = to_numpy(pc.match_substring_regex(s, r"^[+-]?\d{1,18}$"), False)
    v = np.array(pc.cast(pc.if_else(pa.array(ok), s, "0"), pa.int64()))
    if len(rest := np.flatnonzero(~ok & ~blank)):
        v[rest], ok[rest] = parse_iso(s.take(pa.array(rest)))
    return v, ok, blank


def parse_iso(s: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """ISO-8601 text -> seconds. Values with and without a zone are cast separately (fast); what
    a cast refuses is parsed format by format."""
    v, ok = np.zeros(len(s), dtype=np.int64), np.zeros(len(s), dtype=bool)
    zoned = to_numpy(pc.match_substring_regex(s, r"([Zz]|[+-]\d\d:?\d\d)$"), False)
    for part, typ in ((zoned, pa.timestamp("ns", "UTC")), (~zoned, pa.timestamp("ns"))):
        idx = np.flatnonzero(part)
        if len(idx) and (got := try_cast(s.take(pa.array(idx)), typ)) is not None:
            v[idx], ok[idx] = to_numpy(got.cast(pa.int64()), 0) // 1_000_000_000, True
    if len(rest := np.flatnonzero(~ok)):
        norm = pc.replace_substring_regex(s.take(pa.array(rest)), r"^(\d{4}-\d{2}-\d{2})[Tt ]", r"\1 ")
        norm = pc.replace_substring_regex(norm, r"(:\d{2})\.\d+", r"\1")
        norm = pc.replace_substring_regex(norm, r"[Zz]$", "+0000")
        for fmt in TIME_FORMATS:  # each format only on what is still unparsed
            todo = np.flatnonzero(~ok[rest])
            got = pc.strptime(norm.take(pa.array(todo)), format=fmt, unit="s", error_is_null=True)
            hit = to_numpy(pc.is_valid(got), False)
            v[rest[todo[hit]]] = to_numpy(got.cast(pa.int64()), 0)[hit]
            ok[rest[todo[hit]]] = True
    return v, ok


def parse_bool(a: pa.ChunkedArray) -> Parsed:
    """true/false/1/0/yes/no/y/n in any case, or a boolean column."""
    if pa.types.is_boolean(a.type):
        blank = to_numpy(pc.is_null(a), True)
        return to_numpy(a, True).astype(bool), ~blank, blank
    d = pc.dictionary_encode(as_text(a)).combine_chunks()
    words = [str(w).strip().lower() for w in d.dictionary.to_pylist()]
    code = np.array([BOOLS.get(w, 2 if w else 3) for w in words] + [3])[to_numpy(d.indices, len(words))]
    return code == 1, code <= 1, code == 3


def encode_ids(a: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """-> (int32 codes, -1 when blank; dictionary of trimmed ids in order of first appearance)."""
    chunks = pc.dictionary_encode(as_text(a)).chunks
    dictionary = chunks[-1].dictionary  # Arrow gives every chunk the same, final dictionary
    codes = np.concatenate([to_numpy(ch.indices, -1) for ch in chunks]).astype(np.int32)
    trimmed = pc.utf8_trim_whitespace(dictionary)
    if not trimmed.equals(dictionary):  # " 7" and "7" are one id
        again = pc.dictionary_encode(trimmed)
        remap = np.append(to_numpy(again.indices, -1), -1).astype(np.int32)
        codes, dictionary = remap[codes], again.dictionary
    if (empty := pc.index(dictionary, "").as_py()) >= 0:
        codes[codes == empty] = -1
    return codes, dictionary


def encode_words(a: pa.ChunkedArray) -> pa.DictionaryArray:
    """A column of few distinct words as one dictionary array (read as a dictionary, or hashed)."""
    if pa.types.is_dictionary(a.type) and is_text(a):
        return a.unify_dictionaries().combine_chunks()
    return pc.dictionary_encode(as_text(a)).combine_chunks()


def compact_ids(codes: np.ndarray, dictionary: pa.Array, all_kept: bool) -> tuple[np.ndarray, np.ndarray]:
    """Drop ids no kept row uses; -> (codes, ids as an object array of str)."""
    if all_kept:  # every id appears in some row: nothing to drop
        return codes, dictionary.to_numpy(zero_copy_only=False).astype(object)
    used = np.bincount(codes, minlength=len(dictionary)) > 0
    ids = dictionary.filter(pa.array(used)).to_numpy(zero_copy_only=False).astype(object)
    return (np.cumsum(used) - 1).astype(np.int32)[codes], ids


def merge_ids(codes: list[np.ndarray], ids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Codes into each part's ids -> codes into the union of the ids (in order of first appearance)."""
    union = pc.dictionary_encode(pa.concat_arrays([pa.array(i, pa.string()) for i in ids]))
    remap, starts = to_numpy(union.indices, -1).astype(np.int32), np.cumsum([0] + [len(i) for i in ids])
    merged = np.concatenate([remap[starts[k]:starts[k + 1]][c] for k, c in enumerate(codes)])
    return merged.astype(np.int32), union.dictionary.to_numpy(zero_copy_only=False).astype(object)
