"""The input contract: what training/events.py accepts, and how it reports what it does not."""

from __future__ import annotations

import calendar
import gzip
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.model_bundle import EVENT_TYPES
from training.events import (
    InputError,
    format_report,
    load_dataset,
    read_events,
    read_items,
    read_members,
    read_pairs,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "input"
HEADER = "member_id,item_id,event,ts\n"
T0 = 1_793_500_000


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def events_csv(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "events.csv") -> Path:
    return write(tmp_path / name, header + "".join(r + "\n" for r in rows))


def good_rows(n: int) -> list[str]:
    return [f"m{i % 7},i{i % 5},view,{T0 + i}" for i in range(n)]


# --------------------------------------------------------------------------- parsing


def test_integer_and_iso_timestamps(tmp_path):
    iso = ["2026-11-01T12:00:00Z", "2026-11-01 12:00:00", "2026-11-01T12:00:00", "2026-11-01T20:00:00+08:00",
           "2026-11-01T12:00:00.750Z", "2026-11-01"]
    rows = [f"m1,i1,view,{t}" for t in [str(T0), " 42 ", *iso]]
    ev = read_events(events_csv(tmp_path, rows))
    noon = calendar.timegm((2026, 11, 1, 12, 0, 0))
    assert ev.ts.tolist() == [T0, 42, noon, noon, noon, noon, noon, noon - 12 * 3600]
    assert ev.ts.dtype == np.int64


def test_all_iso_column(tmp_path):
    ev = read_events(events_csv(tmp_path, ["m1,i1,view,2026-11-01T12:00:00Z",
                                           "m2,i1,view,2026-11-02T00:00:00Z"]))
    noon = calendar.timegm((2026, 11, 1, 12, 0, 0))
    assert ev.ts.tolist() == [noon, noon + 12 * 3600]


def test_float_seconds_from_spreadsheets_and_milliseconds_rejected(tmp_path):
    rows = [f"m1,i1,view,{T0}.0", f"m1,i1,view,{T0 * 1000}", *good_rows(2)]
    ev = read_events(events_csv(tmp_path, rows), max_bad_share=0.5)
    assert ev.ts.tolist()[0] == T0 and ev.report["rejected"] == {"bad_ts": 1}
    assert "not milliseconds" in ev.report["examples"]["bad_ts"][0]


def test_windows_export_bom_and_crlf(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(("\ufeff" + HEADER + f"m1,i1,view,{T0}\nm2,i2,cart,{T0 + 1}\n").replace("\n", "\r\n")
                     .encode("utf-8"))
    ev = read_events(path)
    assert ev.member_ids.tolist() == ["m1", "m2"] and ev.ts.tolist() == [T0, T0 + 1]


def test_event_names_case_and_whitespace(tmp_path):
    rows = [f"m1,i1,{e},{T0}" for e in ["view", " Click", "FAV ", "Cart", "  PURCHASE  "]]
    ev = read_events(events_csv(tmp_path, rows))
    assert [EVENT_TYPES[e] for e in ev.event] == list(EVENT_TYPES)
    assert ev.event.dtype == np.uint8


def test_quantity_parsed_and_empty_means_one(tmp_path):
    rows = [f"m1,i1,purchase,{T0},3", f"m1,i2,view,{T0},", f"m1,i3,purchase,{T0},1.5"]
    ev = read_events(events_csv(tmp_path, rows, header="member_id,item_id,event,ts,quantity\n"))
    assert ev.quantity.tolist() == [3.0, 1.0, 1.5]
    assert ev.quantity.dtype == np.float32


def test_quantity_absent_is_none(tmp_path):
    assert read_events(events_csv(tmp_path, good_rows(3))).quantity is None


def test_ids_are_strings_and_trimmed(tmp_path):
    ev = read_events(events_csv(tmp_path, [f"1,10,view,{T0}", f" 1 ,010,view,{T0}", f"2,10,view,{T0}"]))
    assert ev.member_ids.tolist() == ["1", "2"]  # order of first appearance
    assert ev.item_ids.tolist() == ["10", "010"]  # text, not numbers: "010" is its own id
    assert ev.member.tolist() == [0, 0, 1] and ev.item.tolist() == [0, 1, 0]
    assert all(isinstance(x, str) for x in ev.member_ids)


def test_extra_columns_ignored_and_header_case(tmp_path):
    path = events_csv(tmp_path, [f"x,m1,i1,view,{T0},y"], header="shop,Member_ID,item_id,EVENT, ts ,note\n")
    ev = read_events(path)
    assert len(ev) == 1 and ev.member_ids.tolist() == ["m1"] and ev.report["rows_kept"] == 1


def test_csv_gz(tmp_path):
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(HEADER + "".join(r + "\n" for r in good_rows(10)))
    assert len(read_events(path)) == 10


def test_parquet_native_types(tmp_path):
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"member_id": [1, 2, 1], "item_id": ["a", "b", "a"],
                             "event": pa.array(["view", "Cart", "purchase"]).dictionary_encode(),
                             "ts": pa.array([T0, T0 + 1, T0 + 2], pa.timestamp("s")),
                             "quantity": [None, 1, 2]}), path)
    ev = read_events(path)
    assert ev.member_ids.tolist() == ["1", "2"] and ev.ts.tolist() == [T0, T0 + 1, T0 + 2]
    assert ev.event.tolist() == [0, 3, 4] and ev.quantity.tolist() == [1, 1, 2]


def test_parquet_event_words_differ_by_row_group(tmp_path):
    """The event column is read as per-row-group dictionaries and unified: every row keeps its word,
    and a bad word is still quoted at its row."""
    path = tmp_path / "events.parquet"
    words = ["view", "cart", " Purchase ", "click", "like", "view", "fav", "cart"]
    pq.write_table(pa.table({"member_id": [f"m{k}" for k in range(8)], "item_id": ["i"] * 8, "event": words,
                             "ts": [T0 + k for k in range(8)]}), path, row_group_size=3)
    ev = read_events(path, max_bad_share=0.5)
    assert [EVENT_TYPES[e] for e in ev.event] == ["view", "cart", "purchase", "click", "view", "fav", "cart"]
    assert ev.report["examples"]["unknown_event"] == [f"{path}:row 5:event: unknown event 'like' "
                                                      f"(expected one of {', '.join(EVENT_TYPES)})"]


def test_parquet_pq_suffix_and_string_ts(tmp_path):
    path = tmp_path / "events.pq"
    pq.write_table(pa.table({"member_id": ["m"], "item_id": ["i"], "event": ["view"],
                             "ts": ["2026-11-01T12:00:00Z"]}), path)
    assert read_events(path).ts.tolist() == [calendar.timegm((2026, 11, 1, 12, 0, 0))]


def test_items_fields():
    items = read_items(FIXTURES / "items.csv")
    assert items.item_id.tolist() == ["i1", "i2", "i3", "i4", "i5"]
    assert items.category.tolist() == ["skincare", "skincare", "tea", "bag", ""]
    assert items.price[:4].tolist() == [129.0, 89.5, 9.9, 1299.0] and math.isnan(items.price[4])
    assert items.stock.tolist() == [10, 0, -1, 3, -1]
    assert items.on_shelf.tolist() == [True, True, True, False, True]
    assert items.launched_at.tolist() == [1793000000, -1, calendar.timegm((2026, 10, 1, 0, 0, 0)), -1, -1]
    assert items.tags.tolist() == ["new gift", "sale", "", "gold-only", ""]


def test_members_fields():
    members = read_members(FIXTURES / "members.csv")
    assert members.member_id.tolist() == ["m1", "m2", "m3", "m9"]
    assert members.tier.tolist() == ["gold", "bronze", "silver", "platinum"]
    assert members.points[0] == 8000 and math.isnan(members.points[2])


def test_load_dataset_id_spaces():
    ds = load_dataset(FIXTURES / "events.csv", FIXTURES / "items.csv", FIXTURES / "members.csv")
    ev = ds.events
    assert ev.item_ids.tolist() == ds.items.item_id.tolist()  # item code = catalogue row
    assert [ds.items.item_id[i] for i in ev.item] == ["i1", "i1", "i2", "i3", "i3", "i3"]
    assert ds.members.member_id.tolist() == ["m1", "m2", "m3", "m9"]  # events first, then file-only
    assert ev.member_ids.tolist() == ds.members.member_id.tolist()
    assert ds.members.tier.tolist() == ["gold", "bronze", "silver", "platinum"]
    assert ev.quantity.tolist() == [1, 2, 1, 1, 1, 1]
    assert ev.report["rows_used"] == 6 and ev.report["items"]["rows_kept"] == 5


def test_load_dataset_without_members_file():
    ds = load_dataset(FIXTURES / "events.csv", FIXTURES / "items.csv")
    assert ds.members.member_id.tolist() == ["m1", "m2", "m3"]
    assert ds.members.tier.tolist() == ["", "", ""] and np.isnan(ds.members.points).all()


def test_unknown_items_counted_outside_the_threshold():
    ds = load_dataset(FIXTURES / "events.csv", FIXTURES / "items.csv", max_bad_share=0.0)
    unknown = ds.events.report["unknown_item"]
    assert unknown["count"] == 1 and unknown["ids"] == 1
    assert unknown["examples"][0].startswith(f"{FIXTURES / 'events.csv'}:7:item_id: item_id 'i9'")
    assert len(ds.events) == 6
    assert "unknown_item: 1 row(s)" in format_report(ds.events.report)


def test_all_items_unknown_is_an_error(tmp_path):
    items = write(tmp_path / "items.csv", "item_id\nzz\n")
    with pytest.raises(InputError, match="none of the 6 events names an item"):
        load_dataset(events_csv(tmp_path, good_rows(6)), items)


def test_read_pairs_skips_and_counts_unknown_ids():
    ds = load_dataset(FIXTURES / "events.csv", FIXTURES / "items.csv", FIXTURES / "members.csv")
    report: dict = {}
    members, items = read_pairs(FIXTURES / "holdout.csv", ds, report=report)
    assert [ds.members.member_id[m] for m in members] == ["m1", "m2", "m3"]
    assert [ds.items.item_id[i] for i in items] == ["i2", "i1", "i4"]
    assert members.dtype == np.int32 and items.dtype == np.int32
    assert report["unknown_member"]["count"] == 1 and report["unknown_item"]["count"] == 1
    assert "holdout.csv:5:member_id: member_id 'm404'" in report["unknown_member"]["examples"][0]
    assert "holdout.csv:6:item_id: item_id 'i404'" in report["unknown_item"]["examples"][0]


def test_read_pairs_none_left(tmp_path):
    ds = load_dataset(FIXTURES / "events.csv", FIXTURES / "items.csv")
    with pytest.raises(InputError, match="no \\(member, item\\) pair left"):
        read_pairs(write(tmp_path / "holdout.csv", "member_id,item_id\nx,y\n"), ds)


# --------------------------------------------------------------------------- bad input


def test_unknown_event_type(tmp_path):
    path = events_csv(tmp_path, [*good_rows(3), f"m1,i1,like,{T0}"])
    with pytest.raises(InputError) as e:
        read_events(path)
    msg = str(e.value)
    assert f"{path}: 1 of 4 rows (25.00%) are bad" in msg
    assert f"{path}:5:event: unknown event 'like' (expected one of view, click" in msg


def test_missing_column(tmp_path):
    path = events_csv(tmp_path, ["m1,i1,view"], header="member_id,item_id,event\n")
    with pytest.raises(InputError, match=r"events.csv:1: missing required column 'ts' .*"
                                         r"columns found: member_id, item_id, event"):
        read_events(path)


def test_missing_column_parquet(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"sku": ["a"]}), path)
    with pytest.raises(InputError, match="items.parquet: missing required column 'item_id'.*found: sku"):
        read_items(path)


def test_unparseable_timestamp(tmp_path):
    bad = ["m1,i1,view,yesterday", "m1,i1,view,2026-13-45", "m1,i1,view,"]
    path = events_csv(tmp_path, [*good_rows(2), *bad])
    with pytest.raises(InputError) as e:
        read_events(path)
    msg = str(e.value)
    assert "bad_ts: 3" in msg
    assert f"{path}:4:ts: ts 'yesterday' is not a time" in msg
    assert f"{path}:5:ts: ts '2026-13-45' is not a time" in msg
    assert f"{path}:6:ts: ts is empty" in msg


def test_negative_timestamp_rejected(tmp_path):
    ev = read_events(events_csv(tmp_path, [*good_rows(3), "m1,i1,view,-5"]), max_bad_share=0.5)
    assert ev.report["rejected"] == {"bad_ts": 1} and len(ev) == 3


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match="events.csv: empty file"):
        read_events(write(tmp_path / "events.csv", ""))


def test_header_only_file(tmp_path):
    with pytest.raises(InputError, match="events.csv: no data rows"):
        read_events(events_csv(tmp_path, []))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.csv: file not found"):
        read_events(tmp_path / "nope.csv")


def test_unsupported_suffix(tmp_path):
    with pytest.raises(InputError, match="unsupported file type"):
        read_events(write(tmp_path / "events.json", "{}"))


def test_not_utf8(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(HEADER.encode() + f"m1,i1,view,{T0}\nm2,".encode() + "商品".encode("gbk") + b",view,1\n")
    with pytest.raises(InputError, match="events.csv:3: text is not UTF-8"):
        read_events(path)


def test_corrupt_parquet(tmp_path):
    with pytest.raises(InputError, match="events.parquet: cannot read Parquet"):
        read_events(write(tmp_path / "events.parquet", "not a parquet file"))


def test_duplicated_items(tmp_path):
    path = write(tmp_path / "items.csv", "item_id,price\na,1\nb,2\nc,3\nb,4\n")
    with pytest.raises(InputError, match=r"items.csv:5:item_id: duplicated item_id 'b', already on .*csv:3"):
        read_items(path)


def test_malformed_csv_line(tmp_path):
    path = events_csv(tmp_path, [*good_rows(3), f"m1,i1,view,{T0},extra", *good_rows(2)])
    with pytest.raises(InputError, match=r"events.csv:5: expected 4 fields, found 5: 'm1,i1,view,\d+,extra'"):
        read_events(path)


def test_many_malformed_lines_counted(tmp_path):
    path = events_csv(tmp_path, [f"m1,i1,view,{T0},x"] * 50)
    with pytest.raises(InputError, match=r"events.csv:2: expected 4 fields, found 5.*\(50 malformed line"):
        read_events(path)


def test_bad_rows_under_threshold_are_kept_out_and_counted(tmp_path):
    rows = good_rows(200)
    rows[9] = f"m1,i1,like,{T0}"
    rows[19] = "m1,,view,1"
    ev = read_events(events_csv(tmp_path, rows), max_bad_share=0.02)
    rep = ev.report
    assert len(ev) == 198 and rep["rows_read"] == 200 and rep["rows_kept"] == 198
    assert rep["rejected"] == {"unknown_event": 1, "empty_id": 1}
    assert rep["examples"]["unknown_event"] == [f"{tmp_path / 'events.csv'}:11:event: unknown event 'like' "
                                                "(expected one of view, click, fav, cart, purchase)"]
    assert rep["examples"]["empty_id"][0].endswith(":21:item_id: item_id is empty")
    text = format_report(rep)
    assert "200 rows read, 198 kept, 2 rejected" in text and "unknown_event: 1" in text


def test_bad_rows_over_threshold_raise_naming_line_and_column(tmp_path):
    rows = good_rows(100)
    rows[4] = f"m1,i1,buy,{T0}"
    rows[49] = "m1,i1,view,noon"
    with pytest.raises(InputError) as e:
        read_events(events_csv(tmp_path, rows))  # 2% bad, default max 1%
    msg = str(e.value)
    assert "2 of 100 rows (2.00%) are bad, more than max_bad_share 1.00%" in msg
    assert "events.csv:6:event: unknown event 'buy'" in msg and "events.csv:51:ts: ts 'noon'" in msg


def test_examples_capped_at_five(tmp_path):
    rows = [f"m1,i1,like,{T0}"] * 8 + good_rows(2)
    ev = read_events(events_csv(tmp_path, rows), max_bad_share=0.9)
    assert ev.report["rejected"]["unknown_event"] == 8 and len(ev.report["examples"]["unknown_event"]) == 5


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path / "events.csv", HEADER + f"m1,i1,view,{T0}\n\n\nm1,i1,like,{T0}\n" + "".join(
        r + "\n" for r in good_rows(200)))
    ev = read_events(path, max_bad_share=0.1)
    assert ev.report["examples"]["unknown_event"][0].startswith(f"{path}:5:event:")


def test_line_numbers_with_quoted_newlines(tmp_path):
    rows = "".join(f"c{i},z\n" for i in range(200))
    path = write(tmp_path / "items.csv", 'item_id,tags\na,"two\nlines"\nb,x\n,y\n' + rows)
    items = read_items(path, max_bad_share=0.1)
    assert len(items) == 202 and items.tags[0] == "two lines"
    with pytest.raises(InputError, match=r"items.csv:5:item_id: item_id is empty"):
        read_items(path, max_bad_share=0.0)


def test_parquet_rows_named_by_row_number(tmp_path):
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"member_id": ["m"] * 3, "item_id": ["i"] * 3, "event": ["view", "nope", "view"],
                             "ts": [T0, T0, None]}), path)
    with pytest.raises(InputError) as e:
        read_events(path)
    assert "events.parquet:row 2:event: unknown event 'nope'" in str(e.value)
    assert "events.parquet:row 3:ts: ts is empty" in str(e.value)


def test_bad_item_values(tmp_path):
    path = write(tmp_path / "items.csv", "item_id,price,stock,on_shelf,launched_at\n"
                 "a,abc,1,true,\nb,1,-5,true,\nc,1,1,maybe,\nd,1,1,true,soon\ne,-2,1,1,\n"
                 + "".join(f"f{i},1,1,1,1\n" for i in range(20)))
    assert len(read_items(path, max_bad_share=0.5)) == 20
    with pytest.raises(InputError) as e:
        read_items(path)
    msg = str(e.value)
    for needle in ["items.csv:2:price: price 'abc' is not a number", "items.csv:3:stock: stock '-5'",
                   "items.csv:4:on_shelf: on_shelf 'maybe'", "items.csv:5:launched_at: launched_at 'soon'",
                   "items.csv:6:price: price '-2'", "bad_price: 2"]:
        assert needle in msg


def test_malformed_rows_in_members_and_duplicates(tmp_path):
    path = write(tmp_path / "members.csv", "member_id,tier\nm1,gold\nm2,silver\nm1,bronze\n")
    with pytest.raises(InputError, match=r"members.csv:4:member_id: duplicated member_id 'm1'.*csv:2"):
        read_members(path)
