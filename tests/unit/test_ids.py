"""IdIndex and text_array: what a dict and astype(str) would say, built in chunks."""

from __future__ import annotations

import numpy as np

from service.ids import IdIndex, text_array


def test_id_index_answers_like_a_dict() -> None:
    ids = np.array(["m10", "m2", "m300", "", "m2", "x"], dtype=object)
    index = IdIndex(ids)
    as_dict = {str(k): i for i, k in enumerate(ids.tolist())}
    for key in [*as_dict, "m1", "m20", "m3000", "m30", "zzz", "m10 "]:
        assert index.get(key) == as_dict.get(key), key
        assert (key in index) == (key in as_dict)
    assert index["m300"] == 2 and len(index) == 6
    assert IdIndex(np.array([], dtype=object)).get("m1") is None


def test_a_given_sort_order_is_used_when_it_sorts_and_ignored_when_it_does_not() -> None:
    ids = np.array(["m10", "m2", "m300", "", "x", "m7"], dtype=object)
    good = np.argsort(ids.astype(str), kind="stable")
    as_dict = {str(k): i for i, k in enumerate(ids.tolist())}
    bad_orders = [good[::-1].copy(), np.zeros(len(ids), np.int64), good[:-1], good + 1,
                  good.astype(np.float64)]
    for order in [good, *bad_orders]:
        index = IdIndex(ids, order)
        for key in [*as_dict, "m1", "zzz"]:
            assert index.get(key) == as_dict.get(key), (order, key)
    assert IdIndex(ids, good)._order is good  # taken as it came, not sorted again
    # repeated ids: the last position wins, as a dict built in order says, whatever order is given
    repeated = np.array(["b", "a", "b"], dtype=object)
    assert IdIndex(repeated, np.argsort(repeated.astype(str), kind="stable")).get("b") == 2


def test_a_key_longer_than_every_id_is_not_cut_to_match_one() -> None:
    assert IdIndex(np.array(["5000001"], dtype=object)).get("5000001999") is None


def test_text_array_in_chunks_equals_astype() -> None:
    values = np.array([f"id{i}" * (1 + i % 3) for i in range(1000)] + [None, 7], dtype=object)
    out = text_array(values, chunk=64)
    assert out.dtype.kind == "U" and out.tolist() == values.astype(str).tolist()


def test_column_to_numpy_makes_strings_one_buffer_in_chunks() -> None:
    import pyarrow as pa

    from service.ids import column_to_numpy

    col = pa.chunked_array([pa.array(["m1", None, "m22"] * 10), pa.array(["m333"])])
    out = column_to_numpy(col, chunk=4)
    assert out.dtype.kind == "U" and out.tolist() == ["m1", "None", "m22"] * 10 + ["m333"]
    points = column_to_numpy(pa.chunked_array([pa.array([1.5, None, 3.0])]), chunk=2)
    assert points.dtype == np.float64 and np.isnan(points[1])
    assert column_to_numpy(pa.chunked_array([], type=pa.string())).tolist() == []


def test_ascii_text_reads_arrow_buffers_like_to_numpy() -> None:
    import pyarrow as pa

    from service.ids import ascii_text, column_to_numpy

    values = [f"m{i:07d}"[: 1 + i % 9] for i in range(5000)] + ["", "a b", "x" * 40]
    arr = pa.array(values)
    assert ascii_text(arr).tolist() == values == ascii_text(arr, chunk=7).tolist()
    assert ascii_text(arr.slice(7, 100)).tolist() == values[7:107]  # an offset into the buffers
    assert ascii_text(pa.array(values, type=pa.large_string())).tolist() == values
    assert ascii_text(pa.array(["m1", None])) is None  # nulls: the chunked path says 'None'
    assert ascii_text(pa.array(["café"])) is None  # not ASCII: the chunked path decodes it
    col = pa.chunked_array([pa.array(["m1", "m22"]), pa.array(["é", "m333"])])
    assert column_to_numpy(col).tolist() == ["m1", "m22", "é", "m333"]
    assert column_to_numpy(pa.chunked_array([arr])).dtype == np.dtype("<U40")


def test_unique_text_equals_numpy_unique_with_inverse() -> None:
    from service.ids import unique_text

    values = np.array(["b", "", "a", "b", "ü", "a", "", "c"], dtype=object)
    want_u, want_inv = np.unique(values.astype(str), return_inverse=True)
    got_u, got_inv = unique_text(values)
    assert got_u.tolist() == want_u.tolist() and got_inv.tolist() == want_inv.tolist()
    empty_u, empty_inv = unique_text(np.array([], dtype=object))
    assert len(empty_u) == 0 and len(empty_inv) == 0
