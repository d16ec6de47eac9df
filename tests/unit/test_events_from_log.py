"""Training input from the service's event log: only behaviour reaches the model, rows are checked and
named like a file's, sources combine, and ``--since`` windows every source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from service.cli import app as cli_app
from service.eventlog.schema import LogRecord, day, partition_dir, to_table
from service.model_bundle import EVENT_TYPES, current_version
from training.events import format_report, load_dataset, read_events
from training.input_files import InputError, parse_since
from training.synth import generate

DAY1 = 1_793_491_200  # 2026-11-01 00:00 UTC
DAY2 = DAY1 + 86400
ITEMS = "item_id\n" + "".join(f"i{i}\n" for i in range(1, 6))


def rec(member: str, item: str, event: str, ts: int, quantity: int = 1) -> LogRecord:
    rec.n = getattr(rec, "n", 0) + 1
    return LogRecord(f"e{rec.n}", member, item, event, ts, quantity, slot="home", position=0,
                     request_id="r1" if event in ("impression", "served") else "")


def write_part(log_dir: Path, records: list[LogRecord], name: str = "part-1_1.parquet") -> Path:
    folder = partition_dir(log_dir, day(records[0].ts))
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(records), folder / name)
    return folder / name


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """Two days: behaviour with served and impression records mixed in."""
    log = tmp_path / "log"
    write_part(log, [rec("m1", "i1", "served", DAY1 + 10), rec("m1", "i1", "impression", DAY1 + 11),
                     rec("m1", "i1", "view", DAY1 + 12), rec("m1", "i2", "served", DAY1 + 13),
                     rec("m2", "i2", "click", DAY1 + 20), rec("m1", "i1", "purchase", DAY1 + 30, 3)])
    write_part(log, [rec("m2", "i3", "impression", DAY2 + 5), rec("m2", "i3", "cart", DAY2 + 6),
                     rec("m3", "i4", "served", DAY2 + 7), rec("m3", "i4", "fav", DAY2 + 8)])
    return log


@pytest.fixture
def items(tmp_path: Path) -> Path:
    path = tmp_path / "items.csv"
    path.write_text(ITEMS)
    return path


def events_of(ds) -> list[tuple[str, str, str, int, float]]:
    ev = ds.events
    return [(ds.members.member_id[m], ds.items.item_id[i], EVENT_TYPES[e], int(t), float(q))
            for m, i, e, t, q in zip(ev.member, ev.item, ev.event, ev.ts, ev.quantity, strict=True)]


def test_only_behaviour_records_reach_the_dataset(log_dir, items):
    ds = load_dataset(log_dir, items, max_bad_share=0.0)
    assert events_of(ds) == [("m1", "i1", "view", DAY1 + 12, 1.0), ("m2", "i2", "click", DAY1 + 20, 1.0),
                             ("m1", "i1", "purchase", DAY1 + 30, 3.0), ("m2", "i3", "cart", DAY2 + 6, 1.0),
                             ("m3", "i4", "fav", DAY2 + 8, 1.0)]
    rep = ds.events.report
    assert rep["left_out"] == {"served": 3, "impression": 2}
    assert rep["rows_read"] == 10 and rep["rows_kept"] == 5 and rep["rejected"] == {}
    text = format_report(rep)
    assert f"{log_dir} (2 part files): 10 rows read, 5 kept, 5 left out" in text
    assert "not behaviour (never in the confidence matrix): 2 impression, 3 served" in text


def test_a_file_and_the_log_combine(tmp_path, log_dir, items):
    history = tmp_path / "history.csv"
    history.write_text(f"member_id,item_id,event,ts\nm9,i5,view,{DAY1 - 100}\nm1,i3,cart,{DAY1 - 50}\n")
    ds = load_dataset([history, log_dir], items, max_bad_share=0.0)
    got = events_of(ds)
    assert got[:2] == [("m9", "i5", "view", DAY1 - 100, 1.0), ("m1", "i3", "cart", DAY1 - 50, 1.0)]
    assert len(got) == 7 and got[2:] == events_of(load_dataset(log_dir, items))
    assert ds.members.member_id.tolist() == ["m9", "m1", "m2", "m3"]
    rep = ds.events.report
    assert [s["file"] for s in rep["sources"]] == [str(history), str(log_dir)]
    assert rep["rows_read"] == 12 and rep["rows_kept"] == 7 and rep["notes"] == []
    assert "all 2 sources: 12 rows read, 7 kept" in format_report(rep)


def test_overlapping_sources_are_noted(tmp_path, log_dir, items):
    history = tmp_path / "history.csv"
    history.write_text(f"member_id,item_id,event,ts\nm1,i1,view,{DAY1 + 12}\nm1,i1,view,{DAY2}\n")
    rep = load_dataset([history, log_dir], items).events.report
    assert len(rep["notes"]) == 1 and "overlap from 2026-11-01 00:00 UTC to 2026-11-02" in rep["notes"][0]
    assert "counted twice" in format_report(rep)


def test_since_cuts_a_day_from_every_source(tmp_path, log_dir, items):
    history = tmp_path / "history.csv"
    history.write_text(f"member_id,item_id,event,ts\nm9,i5,view,{DAY1 + 5}\nm9,i1,view,{DAY2 + 1}\n")
    ds = load_dataset([history, log_dir], items, since=DAY2)
    assert events_of(ds) == [("m9", "i1", "view", DAY2 + 1, 1.0), ("m2", "i3", "cart", DAY2 + 6, 1.0),
                             ("m3", "i4", "fav", DAY2 + 8, 1.0)]
    file_rep, log_rep = ds.events.report["sources"]
    assert file_rep["left_out"] == {"before_since": 1}
    assert log_rep["left_out"] == {"impression": 1, "served": 1} and log_rep["parts"] == 1
    assert "before --since 2026-11-02: 1" in format_report(ds.events.report)


def test_since_inside_a_day_filters_on_ts(log_dir, items):
    ev = read_events(log_dir, since=DAY2 + 7)
    assert ev.ts.tolist() == [DAY2 + 8] and ev.report["left_out"] == {"before_since": 2, "served": 1}


def test_bad_log_rows_are_checked_and_named_by_part_file_and_row(tmp_path, items):
    log = tmp_path / "log"
    good = [rec("m1", "i1", "view", DAY1 + i) for i in range(150)]
    write_part(log, good[:50], "part-1_1.parquet")
    exposure = [rec("m1", "i1", "impression", DAY1 + i) for i in range(40)]
    bad = write_part(log, [*exposure, rec("m1", "i1", "view", DAY1 * 1000), rec("", "i1", "view", DAY1),
                           rec("m1", "i1", "like", DAY1), *good[50:]], "part-2_2.parquet")
    with pytest.raises(InputError) as e:
        read_events(log)
    msg = str(e.value)
    assert "3 of 153 rows (1.96%) are bad" in msg
    assert f"{bad}:row 41:ts: ts {DAY1 * 1000} is not a time (unix seconds, not milliseconds" in msg
    assert f"{bad}:row 42:member_id: member_id is empty" in msg
    assert f"{bad}:row 43:event: unknown event 'like'" in msg
    ev = read_events(log, max_bad_share=0.05)
    assert len(ev) == 150 and ev.report["rejected"] == {"empty_id": 1, "unknown_event": 1, "bad_ts": 1}


def test_unknown_items_in_the_log_are_named_by_part_file(tmp_path, items):
    log = tmp_path / "log"
    part = write_part(log, [rec("m1", "i1", "served", DAY1), rec("m1", "zz", "view", DAY1),
                            rec("m1", "i1", "view", DAY1)])
    unknown = load_dataset(log, items).events.report["unknown_item"]
    assert unknown["count"] == 1 and unknown["examples"][0].startswith(f"{part}:row 2:item_id: item_id 'zz'")


def test_an_empty_window_is_a_clear_error(log_dir, items):
    with pytest.raises(InputError, match=rf"^{log_dir}: no behaviour events since 2026-11-03 "
                                         r"\(10 records in the log\)$"):
        load_dataset(log_dir, items, since=DAY2 + 86400)
    with pytest.raises(InputError, match=r"no behaviour events since 2026-11-02 00:00 UTC \(10 records"):
        read_events(log_dir, since=DAY2 + 9)


def test_a_log_of_exposure_only_is_a_clear_error(tmp_path):
    log = tmp_path / "log"
    write_part(log, [rec("m1", "i1", "served", DAY1), rec("m1", "i1", "impression", DAY1)])
    with pytest.raises(InputError, match=r"log: no behaviour events \(2 records in the log\)"):
        read_events(log)
    (tmp_path / "fresh" / "_sink").mkdir(parents=True)
    with pytest.raises(InputError, match=r"fresh: no behaviour events \(0 records in the log\)"):
        read_events(tmp_path / "fresh")


def test_a_folder_that_is_not_a_log(tmp_path):
    (tmp_path / "exports").mkdir()
    with pytest.raises(InputError, match="exports: a folder but not an event log"):
        read_events(tmp_path / "exports")
    with pytest.raises(InputError, match="nothere: no such file or folder"):
        read_events(tmp_path / "nothere")


def test_exposure_rows_in_a_file_are_left_out_too(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(f"member_id,item_id,event,ts\nm1,i1,impression,{DAY1}\nm1,i1,view,{DAY1}\n")
    ev = read_events(path, max_bad_share=0.0)
    assert len(ev) == 1 and ev.report["left_out"] == {"impression": 1}


def test_since_forms():
    now = DAY2 + 3600
    assert parse_since("90d", now) == now - 90 * 86400 and parse_since(" 24h ", now) == now - 86400
    assert parse_since("2w", now) == now - 14 * 86400 and parse_since("1.5d", now) == now - 129600
    assert parse_since("2026-11-02") == DAY2 and parse_since("2026-11-02T08:00:00+08:00") == DAY2
    for bad in ("", "90", "ninety days", "90x", "2026-13-45"):
        with pytest.raises(InputError, match="--since"):
            parse_since(bad, now)


# --------------------------------------------------------------------------- the CLI


def synth_log(tmp_path: Path) -> tuple[Path, Path]:
    """A small synthetic mall whose events are log records, with served and impression ones mixed in."""
    paths = generate(tmp_path / "mall", members=120, items=80, events=2500, seed=5, days=4,
                     now=DAY2 + 2 * 86400)
    events = pacsv.read_csv(paths["events"]).to_pylist()
    records = []
    for i, e in enumerate(events):
        member, item = str(e["member_id"]), str(e["item_id"])
        if i % 3 == 0:
            records += [rec(member, item, kind, e["ts"] - 1) for kind in ("served", "impression")]
        records.append(rec(member, item, e["event"], e["ts"], e.get("quantity") or 1))
    log = tmp_path / "log"
    for d in sorted({day(r.ts) for r in records}):
        write_part(log, [r for r in records if day(r.ts) == d])
    return log, paths["items"]


def test_cli_trains_from_the_log(tmp_path):
    log, items = synth_log(tmp_path)
    result = CliRunner().invoke(cli_app, ["train", "--events", str(log), "--items", str(items),
                                          "--out", str(tmp_path / "models")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert current_version(tmp_path / "models") and "published" in result.output
    assert "not behaviour (never in the confidence matrix)" in result.output


@pytest.mark.parametrize("command", ["train", "evaluate", "tune"])
def test_cli_since_and_repeated_events_reach_the_loader(tmp_path, log_dir, items, command):
    history = tmp_path / "history.csv"
    history.write_text(f"member_id,item_id,event,ts\nm1,i1,view,{DAY1}\n")
    base = [command, "--events", str(history), "--events", str(log_dir), "--items", str(items)]
    base += ["--out", str(tmp_path / "out")] if command != "evaluate" else []
    bad = CliRunner().invoke(cli_app, [*base, "--since", "yesterday"])
    assert isinstance(bad.exception, InputError) and "--since 'yesterday'" in str(bad.exception)
    empty = CliRunner().invoke(cli_app, [*base, "--since", "2030-01-01"])
    assert isinstance(empty.exception, InputError)
    assert str(empty.exception) == f"{history}: no behaviour events since 2030-01-01 (1 row in the file)"


def test_the_loader_keeps_the_log_columns_typed(log_dir):
    from training.input_files import LogInput

    src = LogInput(log_dir)
    assert src.table.schema.field("ts").type == pa.int64()
    assert pa.types.is_dictionary(src.table.schema.field("event").type)
    assert np.array_equal(src._kept, [3, 2])


def test_rows_before_since_are_not_checked(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(f"member_id,item_id,event,ts\nm1,,like,{DAY1}\nm1,i1,view,{DAY2}\nm1,i1,view,soon\n")
    ev = read_events(path, since=DAY2, max_bad_share=0.5)
    assert ev.ts.tolist() == [DAY2] and ev.report["rejected"] == {"bad_ts": 1}
    assert ev.report["left_out"] == {"before_since": 1} and ev.report["rows_kept"] == 1


def test_merging_id_spaces_keeps_first_appearance_and_empty_parts():
    from training.columns import merge_ids

    parts = [np.array([0, 1, 0], np.int32), np.array([], np.int32), np.array([1, 0], np.int32)]
    codes, ids = merge_ids(parts, [np.array(["a", "b"], object), np.array([], object),
                                   np.array(["c", "a"], object)])
    assert ids.tolist() == ["a", "b", "c"] and codes.tolist() == [0, 1, 0, 0, 2]
