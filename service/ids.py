"""Id -> index lookups and text columns built without holding the GIL for long.

A new bundle loads in a thread beside the event loop that serves requests. A single C call over a
million strings (``dict(zip(...))``, ``object_array.astype(str)``) holds the GIL for 60-400 ms: the
loop stalls, Redis replies look late, requests time out. Here the work is cut into chunks (the
interpreter may switch threads between two) or done by a NumPy sort, which releases the GIL.

    members = IdIndex(bundle.members.member_id)   # sorted ids + searchsorted: no million-entry dict
    members.get("m123")                           # -> int index, or None
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CHUNK = 1 << 14  # elements converted per GIL hold (a few ms for strings)


def text_array(values: np.ndarray | Sequence[object], chunk: int = CHUNK) -> np.ndarray:
    """``np.asarray(values).astype(str)``, a chunk at a time (None -> 'None', as astype does)."""
    values = np.asarray(values)
    if values.dtype.kind == "U":
        return values
    if len(values) <= chunk:
        return values.astype(str)
    parts = [values[i:i + chunk].astype(str) for i in range(0, len(values), chunk)]
    width = max(p.dtype.itemsize for p in parts) // 4
    out = np.empty(len(values), dtype=f"<U{max(width, 1)}")
    at = 0
    for p in parts:
        out[at:at + len(p)] = p
        at += len(p)
    return out


def unique_text(values: np.ndarray | Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(text_array(values), return_inverse=True)`` by a NumPy argsort, which runs without
    the GIL (np.unique's string path held it for ~120 ms over a million member tiers)."""
    text = text_array(values)
    order = np.argsort(text, kind="stable")
    ordered = text[order]
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(len(text), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


class IdIndex:
    """Read-only str id -> position in ``ids`` (the last position for a repeated id, as a dict built
    in order would say).

    Sorted ids searched by bisection (a few microseconds a lookup) instead of a dict: building a
    million-entry dict costs ~400 ms of GIL, this ~20 ms of chunked conversion plus a GIL-free sort.
    """

    def __init__(self, ids: np.ndarray | Sequence[object], order: np.ndarray | None = None) -> None:
        """``order``: the ids' stable argsort, when the bundle carries it (checked, else sorted here)."""
        text = text_array(ids)
        ordered = _sorted_by(text, order)
        if ordered is None or order is None:
            self._order = np.argsort(text, kind="stable")  # NumPy sorts strings without the GIL
            self._sorted = text[self._order]
        else:
            self._order, self._sorted = order, ordered
        self._width = text.dtype.itemsize // 4  # a longer key would be cut to this width by NumPy

    def __len__(self) -> int:
        return len(self._sorted)

    def get(self, key: str, default: int | None = None) -> int | None:
        if len(self._sorted) == 0 or len(key) > self._width:
            return default
        at = int(np.searchsorted(self._sorted, key, side="right")) - 1
        if at >= 0 and self._sorted[at] == key:
            return int(self._order[at])
        return default

    def __getitem__(self, key: str) -> int:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None


def _sorted_by(text: np.ndarray, order: np.ndarray | None) -> np.ndarray | None:
    """``text[order]`` when that is strictly increasing (so ``order`` is a permutation of distinct
    ids), else None: repeated ids, or a stale or damaged order, are sorted afresh instead."""
    if order is None or len(order) != len(text) or order.dtype.kind not in "iu":
        return None
    if len(order) and (int(order.min()) < 0 or int(order.max()) >= len(text)):
        return None
    ordered = text[order]
    return ordered if bool(np.all(ordered[1:] > ordered[:-1])) else None


def column_to_numpy(column: Any, chunk: int = CHUNK) -> np.ndarray:
    """A pyarrow column as NumPy, a chunk at a time; strings become a fixed-width str array.

    ``to_numpy(zero_copy_only=False)`` makes one Python str per row in one call (~60 ms of GIL per
    million rows), and the model then holds a million objects that its eventual release frees in
    one call again, on whichever thread drops the last reference (the event loop, after a swap).
    A fixed-width array is one buffer: made in short steps, freed at once. Nulls read 'None'.
    """
    import pyarrow as pa

    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if text and len(column):
        fast = ascii_text(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
        if fast is not None:
            return fast
    parts = [column.slice(i, chunk).to_numpy(zero_copy_only=False) for i in range(0, len(column), chunk)]
    if not parts:
        return np.zeros(0, dtype="<U1") if text else column.to_numpy(zero_copy_only=False)
    if text:
        return _join_text(parts)
    return np.concatenate(parts)


def ascii_text(array: Any, chunk: int = CHUNK) -> np.ndarray | None:
    """An Arrow string array as a fixed-width str array built by NumPy from Arrow's buffers: no
    Python str per row, so a million ids take milliseconds of GIL instead of ~0.4 s (what stalled
    the event loop during a swap). None when a value is null or not ASCII (the caller falls back)."""
    import pyarrow as pa

    if array.null_count:
        return None
    offsets_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    _, offset_buf, data_buf = array.buffers()
    offsets: np.ndarray = np.frombuffer(offset_buf, dtype=offsets_type)
    offsets = offsets[array.offset:array.offset + len(array) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    if data[offsets[0]:offsets[-1]].max(initial=0) >= 128:
        return None
    lengths = np.diff(offsets)
    width = max(int(lengths.max(initial=0)), 1)
    cols = np.arange(width)
    last = max(len(data) - 1, 0)
    if len(data) == 0:
        data = np.zeros(1, np.uint8)
    out = np.empty(len(lengths), dtype=f"<U{width}")
    for start in range(0, len(lengths), chunk):  # a few ms of GIL per chunk, as elsewhere here
        stop = min(start + chunk, len(lengths))
        at = np.minimum(offsets[start:stop, None] + cols, last)  # past a value's end: masked below
        code = np.take(data, at).astype("<u4")  # an ASCII byte is its UTF-32 code point
        code *= cols < lengths[start:stop, None]  # NUL pads the shorter values, as NumPy does
        out[start:stop] = code.view(f"<U{width}").ravel()
    return out


def _join_text(parts: list[np.ndarray]) -> np.ndarray:
    """Object chunks -> one fixed-width str array, converting (and freeing) one chunk at a time."""
    texts = [text_array(p) for p in parts]
    width = max(max(t.dtype.itemsize for t in texts) // 4, 1)
    return np.concatenate([t.astype(f"<U{width}") for t in texts])
