"""Small vectorised helpers of the feature code: lookup tables, group statistics, rounding.

Kept apart so features.py reads as the list of features; nothing here knows what a feature is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.ids import unique_text


def string_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """String column -> int codes, '' (unknown) -> -1."""
    uniq, inverse = unique_text(values)  # np.unique's string path holds the GIL; this sorts without
    out = inverse.astype(np.int64)
    blank = bool(len(uniq)) and uniq[0] == ""
    if blank:
        out -= 1  # '' sorts first: it becomes -1, the rest shift down
    return out, int(len(uniq) - blank)


def bincount(x: np.ndarray, weights: np.ndarray | None = None, minlength: int = 0,
             chunk: int = 1 << 20) -> np.ndarray:
    """``np.bincount`` a slice at a time. It never releases the GIL: over a 1M-member bundle's 8M
    history rows one call held it for 25-60 ms (the event loop waits when a bundle loads beside it);
    a 1M-row slice holds it for a few ms."""
    out = np.bincount(x[:chunk], None if weights is None else weights[:chunk], minlength=minlength)
    for start in range(chunk, len(x), chunk):
        part = np.bincount(x[start:start + chunk], None if weights is None else weights[start:start + chunk],
                           minlength=len(out))
        if len(part) > len(out):
            out = np.concatenate([out, np.zeros(len(part) - len(out), dtype=out.dtype)])
        out += part
    return out


def percentile(values: np.ndarray) -> np.ndarray:
    """Share of items with a strictly lower value (ties share one value; 1 item -> 0)."""
    ranked = np.sort(values)
    return (np.searchsorted(ranked, values, "left") / max(len(values) - 1, 1)).astype(np.float32)


def zscore(x: np.ndarray) -> np.ndarray:
    """Within-batch standard score (0 for a constant batch): scale-free first-stage signals."""
    if len(x) == 0:
        return x
    d = x - np.add.reduce(x) / len(x)  # what x.mean() computes, without its Python-level overhead
    std = float(np.sqrt(np.dot(d, d) / len(x)))
    return d / std if std > 0 else np.zeros_like(x)


def group_median(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of the finite values per group (NaN for a group without one), vectorised."""
    ok = np.isfinite(values)
    g, v = groups[ok], values[ok]
    order = np.lexsort((v, g))
    g, v = g[order], v[order]
    start = np.searchsorted(g, np.arange(n_groups), "left")
    count = np.searchsorted(g, np.arange(n_groups), "right") - start
    lo = np.minimum(start + (count - 1) // 2, max(len(v) - 1, 0))
    hi = np.minimum(start + count // 2, max(len(v) - 1, 0))
    out = np.full(n_groups, np.nan)
    has = count > 0
    out[has] = (v[lo[has]] + v[hi[has]]) / 2
    return out


def median(x: np.ndarray) -> float:
    """np.median without its overhead (a member has a handful of prices)."""
    if len(x) == 0:
        return np.nan
    x = np.sort(x)
    mid = len(x) // 2
    return float(x[mid]) if len(x) % 2 else float(x[mid - 1] + x[mid]) / 2


def runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal keys."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


END = np.iinfo(np.int64).max  # sentinel key that ends every lookup table
NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True)
class Table:
    """Sorted int keys -> rows of float values; the last row (key END) is what a miss returns."""

    keys: np.ndarray  # int64, sorted, ends with END
    values: np.ndarray  # float64 [len(keys), columns]

    @classmethod
    def build(cls, keys: np.ndarray, columns: Sequence[np.ndarray], miss: Sequence[float],
              head: tuple[int, Sequence[float]] | None = None) -> Table:
        """``head`` = (key, values) put first: a key below every other one (unknown = -1)."""
        keys = np.asarray(keys, dtype=np.int64)
        n, first = len(keys), int(head is not None)
        k = np.empty(first + n + 1, dtype=np.int64)  # filled in place: no stacking, no concatenating
        v = np.empty((first + n + 1, len(miss)), dtype=np.float64)
        if head is not None:
            k[0] = head[0]
            v[0] = head[1]
        k[first:first + n] = keys
        k[-1] = END
        if n:
            for j, column in enumerate(columns):
                v[first:first + n, j] = column
        v[-1] = miss
        return cls(k, v)

    def get(self, queries: np.ndarray) -> np.ndarray:
        keys = self.keys
        pos = keys.searchsorted(queries)
        np.putmask(pos, keys.take(pos) != queries, len(keys) - 1)  # take(): cheaper than [] on small arrays
        return self.values.take(pos, axis=0)


def group_table(codes: np.ndarray, ts: np.ndarray, strong: np.ndarray) -> Table:
    """Per code the member touched: share of their known-code entries, strong entries, last time.

    Unknown code (-1) -> NaN everywhere; a code the member never touched -> share 0, strong 0, no time.
    """
    known = codes >= 0
    codes, ts, strong = codes[known], ts[known], strong[known]
    miss, unknown = (0.0, 0.0, np.nan), (-1, (np.nan, np.nan, np.nan))
    if len(codes) == 0:
        return Table.build(codes, (), miss, head=unknown)
    order = np.lexsort((ts, codes))
    codes, ts, strong = codes[order], ts[order], strong[order].astype(np.float64)
    starts = runs(codes)
    ends = np.append(starts[1:], len(codes))
    columns = ((ends - starts) / len(codes), np.add.reduceat(strong, starts), ts[ends - 1].astype(np.float64))
    return Table.build(codes[starts], columns, miss, head=unknown)


def quantise(x: np.ndarray) -> np.ndarray:
    """Round every value to 16 mantissa bits (relative step 1.5e-5), in place.

    LightGBM splits at the midpoint of two seen values and compares in double; ONNX trees compare in
    float32. On this grid every midpoint is exact in float32, so both decide every split alike (the
    difference is otherwise up to 0.2 in score for values one float32 step from a threshold).
    """
    bits = x.view(np.uint32)  # NaN and inf keep their top bits, so they stay NaN and inf
    bits += np.uint32(0x40)
    bits &= np.uint32(0xFFFFFF80)
    return x
