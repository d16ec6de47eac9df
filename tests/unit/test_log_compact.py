"""`mallrec log compact`: a closed day's parts become one file (or a few of at most --target-rows) with
every row once, in stream order; today is never touched; a crash between the rename and the deletes
leaves every reader counting each record once, and the next run finishes the deletes; the sink's
restart recovery never removes a compacted file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from service.eventlog import compact, files
from service.eventlog.compact import CompactError, DayResult, compact_log
from service.eventlog.schema import LogRecord, covered_parts, day, log_files, read_log
from training.input_files import LogInput

DAY = 86400
NOW = 1_764_806_400 + 12 * 3600  # noon UTC of a known day
D1, D2, TODAY = day(NOW - 2 * DAY), day(NOW - DAY), day(NOW)
MS = 1_764_700_000_000
BATCHES = 15  # ids 0..104: sequence numbers cross 9 -> 10 -> 100, where name order and id order differ


def batch_ids(b: int) -> tuple[str, str]:
    return f"{MS}-{b * 7}", f"{MS}-{b * 7 + 6}"


def build(log: Path, batches: int = BATCHES) -> None:
    """Batches as the sink writes them: one file per day each, then the checkpoint."""
    for b in range(batches):
        recs = [LogRecord(f"b{b:02d}-{k}", f"m{k}", f"i{b}", "view" if k % 3 else "served",
                          NOW - (2 - k % 3) * DAY + b, rules=("Pin",) if k == 4 else ()) for k in range(7)]
        first, last = batch_ids(b)
        files.write_batch(log, recs, first, last)
        files.write_checkpoint(log, last)


def snapshot(log: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(log)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(log.rglob("*")) if p.is_file() and p.name != compact.LOCK}


def day_files(log: Path, date: str) -> list[str]:
    return sorted(p.name for p in (log / f"date={date}").iterdir())


def run(log: Path, **kw: object) -> list[DayResult]:
    return list(compact_log(log, now=NOW, **kw))  # type: ignore[arg-type]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    build(tmp_path / "log")
    return tmp_path / "log"


def test_each_closed_day_becomes_one_file_with_every_row_once_in_stream_order(log: Path) -> None:
    before = read_log(log)
    today = {p: s for p, s in snapshot(log).items() if p.startswith(f"date={TODAY}")}
    results = run(log)
    assert [r.date for r in results] == [D1, D2] and not any(r.error for r in results)
    first, last = batch_ids(0)[0], batch_ids(BATCHES - 1)[1]
    for r in results:
        assert day_files(log, r.date) == [f"part-{first}_{last}.parquet"]
        assert (r.files_before, r.files_after, r.rows) == (BATCHES, 1, {D1: 3, D2: 2}[r.date] * BATCHES)
        assert 0 < r.bytes_after < r.bytes_before
    # the reader's table is the same, row for row and in the same order
    assert read_log(log).equals(before)
    d1 = pq.read_table(log / f"date={D1}" / f"part-{first}_{last}.parquet")
    assert d1.column("event_id").to_pylist() == [f"b{b:02d}-{k}" for b in range(BATCHES) for k in (0, 3, 6)]
    assert d1.schema.equals(before.schema)
    assert {p: s for p, s in snapshot(log).items() if p.startswith(f"date={TODAY}")} == today
    assert len(day_files(log, TODAY)) == BATCHES, "today is the sink's: never compacted"
    again = run(log)
    assert all(not r.changed for r in again) and read_log(log).equals(before)


def test_target_rows_splits_a_day_at_part_boundaries(log: Path) -> None:
    before = read_log(log)
    results = run(log, date=D1, target_rows=7)
    names = day_files(log, D1)
    assert results[0].files_after == 7 and len(names) == 8  # 2 parts (6 rows) per file, one left alone
    assert all(pq.read_metadata(log / f"date={D1}" / n).num_rows <= 7 for n in names)
    assert not covered_parts(list((log / f"date={D1}").iterdir()))
    assert read_log(log).equals(before)
    assert len(day_files(log, D2)) == BATCHES, "--date touches that day only"


def test_a_crash_after_the_rename_counts_every_record_once_and_the_next_run_cleans_up(
        log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    before = read_log(log)
    trained = LogInput(log).table

    class Crash(BaseException):
        """Like a kill: nothing after it runs."""

    def delete_some(paths: list[Path]) -> None:
        paths[0].unlink()  # one part gone, the rest still there
        raise Crash

    monkeypatch.setattr(compact, "_delete", delete_some)
    with pytest.raises(Crash):
        run(log, date=D1)
    monkeypatch.undo()
    folder = log / f"date={D1}"
    assert len(list(folder.glob("part-*.parquet"))) == BATCHES, "the output and all parts but one"
    assert len(covered_parts(list(folder.iterdir()))) == BATCHES - 1
    # every reader lists the files through log_files: the pyarrow reader, training and the report's DuckDB
    assert read_log(log).equals(before)
    assert LogInput(log).table.equals(trained)
    listed = [str(p) for p in log_files(log)]
    con = duckdb.connect()  # as the report reads: read_parquet over the listed files
    counted = con.execute("SELECT count(*) FROM read_parquet($f)", {"f": listed}).fetchone()
    assert counted == (before.num_rows,)

    results = run(log, date=D1)
    assert results[0].leftovers == BATCHES - 1 and results[0].files_before == 0
    assert len(list(folder.glob("part-*.parquet"))) == 1
    assert read_log(log).equals(before)


def test_a_crash_before_the_rename_leaves_the_parts_and_no_temporary_file(
        log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(log)

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(compact.os, "replace", fail)
    results = run(log, date=D1)
    assert "No space left on device" in results[0].error
    assert snapshot(log) == before


def test_dry_run_changes_nothing(log: Path) -> None:
    run(log, date=D2)  # D2 compacted, D1 not
    compact_file = next((log / f"date={D2}").glob("part-*.parquet"))
    leftover = log / f"date={D2}" / "part-{}_{}.parquet".format(*batch_ids(3))
    pq.write_table(read_log(log).slice(0, 0), leftover)  # as if a crash had left a part behind
    stale = log / f"date={D1}" / f"{compact.TMP_PREFIX}part-1_2.parquet.tmp"
    stale.write_bytes(b"an output a killed run was writing")
    before = snapshot(log)
    results = list(compact_log(log, dry_run=True, now=NOW))
    assert snapshot(log) == before
    assert (results[0].files_before, results[0].files_after, results[0].rows) == (BATCHES, 1, 3 * BATCHES)
    assert results[1].leftovers == 1 and results[1].files_before == 0 and compact_file.exists()
    run(log)
    assert not stale.exists() and not leftover.exists() and compact_file.exists()


def test_a_corrupt_part_skips_its_day_and_is_named(log: Path) -> None:
    bad = log / f"date={D1}" / f"part-{MS + 1}-0_{MS + 1}-5.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    files.write_checkpoint(log, f"{MS + 1}-5")
    d1 = day_files(log, D1)
    results = run(log)
    assert bad.name in results[0].error and day_files(log, D1) == d1
    assert results[1].date == D2 and not results[1].error and len(day_files(log, D2)) == 1


def test_the_sink_recovery_never_removes_a_compacted_file(log: Path) -> None:
    checkpoint = files.read_checkpoint(log)
    # a late record for D1 in a batch the sink wrote but had not committed when it was killed
    late = files.write_batch(log, [LogRecord("late", "m", "i", "view", NOW - 2 * DAY + 500)],
                             f"{MS + 1}-0", f"{MS + 1}-3")
    results = run(log, date=D1)
    assert results[0].pending == 1 and results[0].files_before == BATCHES, "the uncommitted part stays apart"
    assert late[0].exists()
    compacted = [p for p in (log / f"date={D1}").glob("part-*.parquet") if p != late[0]]
    assert len(compacted) == 1
    removed = files.remove_uncommitted(log, checkpoint)  # the sink restarting
    assert removed == late and compacted[0].exists()
    assert read_log(log).num_rows == BATCHES * 7


def test_readers_skip_a_part_inside_another_files_range(tmp_path: Path) -> None:
    names = ["part-1-0_1-9.parquet", "part-1-0_5-0.parquet", "part-2-0_3-0.parquet", "part-5-1_6-0.parquet",
             "part-x.parquet", "part-1-10_1-12.parquet"]
    paths = [tmp_path / n for n in names]
    assert {p.name for p in covered_parts(paths)} == {"part-1-0_1-9.parquet", "part-2-0_3-0.parquet",
                                                      "part-1-10_1-12.parquet"}
    assert not covered_parts([tmp_path / "part-1-0_1-9.parquet", tmp_path / "part-1-10_1-19.parquet"])


def test_only_closed_days_and_one_run_at_a_time(log: Path) -> None:
    with pytest.raises(CompactError, match="not a closed day"):
        run(log, date=TODAY)
    with pytest.raises(CompactError, match="not a date"):
        run(log, date="2025-13-01")
    assert [r.date for r in run(log, days=1, dry_run=True)] == [D2]
    import fcntl

    with open(log / compact.LOCK, "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(CompactError, match="another"):
            run(log)
    with pytest.raises(CompactError, match="no such folder"):
        run(log / "missing")


def mallrec(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_the_command_prints_each_day_and_a_total_and_exits_2_on_a_bad_day(tmp_path: Path) -> None:
    log = tmp_path / "log"
    old = time.time() - 5 * DAY
    for b in range(3):
        files.write_batch(log, [LogRecord(f"e{b}", "m", "i", "view", int(old) + b),
                                LogRecord(f"f{b}", "m", "i", "view", int(old) + DAY + b)], f"{b}-0", f"{b}-1")
    files.write_checkpoint(log, "2-1")
    first, second = day(old), day(old + DAY)
    dry = mallrec("log", "compact", "--log", str(log), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{first}: 3 files -> 1, 3 rows" in dry.stdout
    assert "would compact 6 files -> 2, 6 rows" in dry.stdout
    assert len(list((log / f"date={first}").iterdir())) == 3
    (log / f"date={second}" / "part-9-0_9-1.parquet").write_bytes(b"garbage")
    files.write_checkpoint(log, "9-1")
    done = mallrec("log", "compact", "--log", str(log))
    assert done.returncode == 2
    assert f"{first}: 3 files -> 1, 3 rows" in done.stdout and "compacted 3 files -> 1" in done.stdout
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2 and "part-9-0_9-1.parquet" in errors[0] and "Traceback" not in done.stderr
    assert len(list((log / f"date={first}").iterdir())) == 1
    assert len(list((log / f"date={second}").iterdir())) == 4, "the bad day is left as it was"
    missing = mallrec("log", "compact", "--log", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such folder" in missing.stderr


@pytest.mark.parametrize("reader", ["read_log", "train's log input"])
def test_a_reader_a_compaction_overtakes_lists_again_and_reads_every_row_once(
        log: Path, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    """A compaction between a reader's listing and its read deletes the parts it listed: the reader
    lists again and takes the rows from the compacted file, once each."""
    from service.eventlog import schema

    def read() -> list[tuple[object, ...]]:
        table = read_log(log) if reader == "read_log" else LogInput(log).table
        return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))

    before = read()
    listed = schema.log_files
    listings: list[int] = []

    def then_compact(log_dir: Path, since: float | None = None) -> list[Path]:
        found = listed(log_dir, since)
        listings.append(len(found))
        if len(listings) == 1:
            run(log)  # renames its files in, then deletes the parts just listed
        return found

    monkeypatch.setattr(schema, "log_files", then_compact)
    got = read()
    assert len(listings) == 2 and listings[1] < listings[0], "the reader did not list the log again"
    assert got == before  # every row, once
