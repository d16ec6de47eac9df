"""The search box's text matching: a word index (field -> word -> the items whose field has that
word) and the query lookup on it (`match_query` -> `QueryHits`).

The index is built when a bundle loads, beside the model that is serving. A Python loop over every
item held the GIL for ~0.4-0.8 s at 100k items, and requests waited for it during a hot swap (p99
284-358 ms at 100 RPS). This builds it from the distinct pieces of text instead: Arrow splits the
fields on whitespace and finds the distinct pieces (no GIL), Python tokenises only those (a
catalogue has a few thousand), and NumPy joins pieces back to items. The result is the same as
tokenising every item (`tokens` on the whole value): `tokens` never matches whitespace, so a
value's words are its pieces' words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

_TOKEN = re.compile(r"[\w\-]+", re.UNICODE)
#: How strongly a query word matching each item field says "this is what they look for".
QUERY_FIELD_WEIGHTS = {"brand": 3.0, "category": 2.0, "tags": 1.0}

WordIndex = dict[str, dict[str, np.ndarray]]
FIELD_NAMES = tuple(QUERY_FIELD_WEIGHTS)


@dataclass(frozen=True)
class QueryHits:
    """Items matching a query and how well (sum of field weights over matched words)."""

    items: np.ndarray  # int item indices, ascending
    strength: np.ndarray  # float
    field: np.ndarray  # index into FIELD_NAMES of the best field each item matched on (for reasons)

    @property
    def fields(self) -> _FieldOf:
        """item -> the name of the best field it matched on."""
        return _FieldOf(self)

    def strength_for(self, items: np.ndarray) -> np.ndarray:
        """The strength of each of ``items`` (0 for an item that does not match)."""
        if len(self.items) == 0:
            return np.zeros(len(items))
        at = np.minimum(np.searchsorted(self.items, items), len(self.items) - 1)
        return np.where(self.items[at] == items, self.strength[at], 0.0)

    @cached_property
    def _by_strength(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-self.strength, kind="stable")
        return order, -self.strength[order]

    def strongest(self, n: int, reach: float) -> np.ndarray:
        """Positions (into ``items``) of the matches that can make the top ``n`` when a score adds at
        most ``reach`` to the strength: those stronger than the n-th strongest minus ``reach``."""
        order, negated = self._by_strength
        if n >= len(order):
            return order
        if n <= 0:
            return order[:0]
        return order[:int(np.searchsorted(negated, negated[n - 1] + reach, side="left"))]


@dataclass(frozen=True)
class _FieldOf:
    hits: QueryHits

    def __getitem__(self, item: int) -> str:
        at = int(np.searchsorted(self.hits.items, item))
        if at == len(self.hits.items) or self.hits.items[at] != item:
            raise KeyError(item)
        return FIELD_NAMES[int(self.hits.field[at])]


def tokens(text: str) -> list[str]:
    """Lower-case words of a query or an item field (the same rule on both sides)."""
    return _TOKEN.findall(text.lower())


def build_query_index(fields: dict[str, np.ndarray]) -> WordIndex:
    """``fields``: field name -> one str per item ('' or None = nothing). Returns field -> word ->
    int64 item indices, ascending, each item once."""
    return {name: _field_index(values) for name, values in fields.items()}


def _field_index(values: np.ndarray) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(values)
    text = pa.array(np.asarray(values), type=pa.string(), from_pandas=True)
    split = pc.utf8_split_whitespace(text.fill_null(""))
    owner = pc.list_parent_indices(split).to_numpy()  # the item of each piece
    pieces = pc.dictionary_encode(pc.list_flatten(split))
    piece_of = pieces.indices.to_numpy(zero_copy_only=False)
    words: dict[str, int] = {}
    piece_words = [[words.setdefault(w, len(words)) for w in dict.fromkeys(tokens(p))]
                   for p in pieces.dictionary.to_pylist()]
    if not words:
        return {}
    lengths = np.array([len(w) for w in piece_words], dtype=np.int64)
    flat = np.array([w for ws in piece_words for w in ws], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    per_piece = lengths[piece_of]  # words each piece occurrence brings
    item = np.repeat(owner, per_piece)
    # the words of each occurrence: its piece's run in ``flat``
    offset = np.arange(int(per_piece.sum())) - np.repeat(np.cumsum(per_piece) - per_piece, per_piece)
    word = flat[np.repeat(starts[piece_of], per_piece) + offset]
    pairs = np.sort(word * max(n, 1) + item)  # by word, then item (a sort beats np.unique's hashing here)
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]  # each (word, item) once
    word, item = pairs // max(n, 1), pairs % max(n, 1)
    bounds = np.searchsorted(word, np.arange(len(words) + 1))
    return {w: item[bounds[i]:bounds[i + 1]] for w, i in words.items() if bounds[i + 1] > bounds[i]}


def match_query(index: WordIndex, query: str) -> QueryHits:
    """Items whose brand, category or tags contain a word of ``query`` (vectorised per word)."""
    hits, weights, fields = [], [], []
    for word in dict.fromkeys(tokens(query)):
        for f, (field_name, field_weight) in enumerate(QUERY_FIELD_WEIGHTS.items()):
            found = index[field_name].get(word)
            if found is not None:
                hits.append(found)
                weights.append(np.full(len(found), field_weight))
                fields.append(np.full(len(found), f))
    if not hits:
        return QueryHits(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    every, weight, field = np.concatenate(hits), np.concatenate(weights), np.concatenate(fields)
    items, inverse = np.unique(every, return_inverse=True)
    strength = np.bincount(inverse, weights=weight, minlength=len(items))
    heaviest = np.lexsort((field, -weight, inverse))  # per item: heaviest field first (first on ties)
    first = np.ones(len(heaviest), dtype=bool)
    first[1:] = inverse[heaviest][1:] != inverse[heaviest][:-1]
    return QueryHits(items, strength, field[heaviest][first])
