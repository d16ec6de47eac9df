"""The vectorised word index equals tokenising every item in Python (the definition it replaces)."""

from __future__ import annotations

import numpy as np
import pytest

from service.query_index import QUERY_FIELD_WEIGHTS, build_query_index, match_query, tokens


def reference_index(fields: dict[str, np.ndarray]) -> dict[str, dict[str, list[int]]]:
    """Every item's field, tokenised whole: what the index means."""
    out: dict[str, dict[str, list[int]]] = {}
    for name, values in fields.items():
        words: dict[str, list[int]] = {}
        for i, text in enumerate(values.tolist()):
            for word in sorted(set(tokens(text or ""))):
                words.setdefault(word, []).append(i)
        out[name] = words
    return out


def as_lists(index: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list[int]]]:
    return {f: {w: items.tolist() for w, items in words.items()} for f, words in index.items()}


def test_hand_cases_unicode_separators_repeats_and_blanks() -> None:
    fields = {
        "brand": np.array(["Acme", "ACME  Labs", "", "Café Crème", None, "acme"], dtype=object),
        "category": np.array(["skin-care", "Skin Care", "hair\tcare", "σκιά ΣΑΣ", "", "a_b c"], dtype=object),
        "tags": np.array(["red red blue", " red\u00a0blue ", "x,y;z", "", "anti-age  anti-age", "日本 茶"],
                         dtype=object),
    }
    assert as_lists(build_query_index(fields)) == reference_index(fields)


def test_a_synthetic_catalogue_indexes_exactly_as_item_by_item() -> None:
    rng = np.random.default_rng(4)
    vocab = np.array(["Sun", "moon", "ÉTÉ", "x-1", "bio", "Bio", "gift_set", "spa", "", "über"], dtype=object)

    def text(k: int) -> np.ndarray:
        return np.array([" ".join(rng.choice(vocab, rng.integers(0, k + 1))) for _ in range(3000)],
                        dtype=object)

    fields = {"brand": text(1), "category": text(2), "tags": text(6)}
    got = build_query_index(fields)
    assert as_lists(got) == reference_index(fields)
    assert all(v.dtype == np.int64 for words in got.values() for v in words.values())


def test_nothing_to_index() -> None:
    assert build_query_index({"tags": np.array(["", " ", None], dtype=object)}) == {"tags": {}}


def test_match_query_sums_field_weights_and_names_the_best_field() -> None:
    fields = {"brand": np.array(["acme", "zen", "acme"], dtype=object),
              "category": np.array(["soap", "acme", ""], dtype=object),
              "tags": np.array(["acme soap", "", "soap"], dtype=object)}
    hits = match_query(build_query_index(fields), "ACME soap")
    assert hits.items.tolist() == [0, 1, 2]
    w = QUERY_FIELD_WEIGHTS
    assert hits.strength.tolist() == pytest.approx([w["brand"] + w["category"] + 2 * w["tags"],
                                                    w["category"], w["brand"] + w["tags"]])
    assert [hits.fields[i] for i in (0, 1, 2)] == ["brand", "category", "brand"]
