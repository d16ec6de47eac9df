"""`mallrec log compact`: merge the event log's small part files of closed days (service.eventlog.compact);
pyarrow loads inside the command, so `mallrec --help` stays instant."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape

from service.errors import MallrecError

if TYPE_CHECKING:
    from service.eventlog.compact import DayResult

app = typer.Typer(name="log", help="Housekeeping of the event log's Parquet files (compaction).",
                  no_args_is_help=True, rich_markup_mode=None)



def _line(r: DayResult, dry_run: bool) -> str:
    parts = []
    if r.files_before:
        after = "?" if dry_run else decimal(r.bytes_after)
        parts.append(f"{r.files_before:,} files -> {r.files_after:,}, {r.rows:,} rows, "
                     f"{decimal(r.bytes_before)} -> {after}")
    if r.leftovers:
        parts.append(f"{r.leftovers:,} part(s) an interrupted run had merged "
                     + ("to delete" if dry_run else "deleted"))
    if r.pending:
        parts.append(f"{r.pending:,} part(s) above the sink's checkpoint left as they are")
    return f"{r.date}: " + ("; ".join(parts) if parts else "nothing to compact")


def compact(
    log: Annotated[Path, typer.Option("--log", help="The event log's folder (LOG_DIR/date=YYYY-MM-DD/"
                                                    "part-*.parquet).")],
    days: Annotated[int | None, typer.Option(
        min=1, help="Only the last N closed days (default: every closed day).")] = None,
    date: Annotated[str | None, typer.Option(help="Only this closed day (YYYY-MM-DD, UTC).")] = None,
    target_rows: Annotated[int, typer.Option(
        min=1, help="Rows per compacted file at most (a day with more becomes several files).")] = 5_000_000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be compacted; change nothing.")
                       ] = False,
) -> None:
    """Merge each closed day's (UTC, before today) part files into one file per TARGET_ROWS rows, rows
    in stream order, named part-<first id>_<last id>.parquet. Safe to stop at any moment and to rerun.
    A running sink does this by itself after each UTC day ends; this is for a log no sink compacts
    (`mallrec sink --no-compact`, copied files) or to compact now."""
    from service.eventlog.compact import compact_log

    if days is not None and date is not None:
        raise MallrecError("give --days or --date, not both")
    out, err = Console(soft_wrap=True, highlight=False), Console(stderr=True, soft_wrap=True, highlight=False)
    files_before = files_after = rows = bytes_before = bytes_after = leftovers = 0
    failed: list[str] = []
    looked = 0
    for r in compact_log(log, days=days, date=date, target_rows=target_rows, dry_run=dry_run):
        looked += 1
        if r.error:
            failed.append(r.date)
            err.print(f"[bold red]error:[/] date={r.date}: {escape(r.error)} (day skipped)")
            continue
        out.print(escape(_line(r, dry_run)))
        files_before += r.files_before
        files_after += r.files_after
        rows += r.rows
        bytes_before += r.bytes_before
        bytes_after += r.bytes_after
        leftovers += r.leftovers
    verb = "would compact" if dry_run else "compacted"
    after = "?" if dry_run else decimal(bytes_after)
    extra = f"; {leftovers:,} leftover parts {'to delete' if dry_run else 'deleted'}" if leftovers else ""
    out.print(f"total: {looked} closed days looked at; {verb} {files_before:,} files -> {files_after:,}, "
              f"{rows:,} rows, {decimal(bytes_before)} -> {after}{extra}")
    if failed:
        raise MallrecError(f"{len(failed)} day(s) not compacted: {', '.join(failed)}")


def register(root: typer.Typer) -> None:
    app.command()(compact)
    root.add_typer(app, name="log")
