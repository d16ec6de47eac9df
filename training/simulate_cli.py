"""`mallrec simulate` (registered on the root app): options, then the run and its tables.

The simulation itself (and every heavy import) lives in ``training.simulate``.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


class Retrain(StrEnum):
    nightly = "nightly"
    never = "never"


OutOpt = Annotated[Path, typer.Option(
    "--out", help="A new folder for the run: history/ (the day-0 synthetic mall), models/, log/ (the event "
    "log, for `mallrec report`), summary.json.")]
MembersOpt = Annotated[int, typer.Option(
    help="Simulated members (the catalogue has a quarter as many items, at least 100).")]
DaysOpt = Annotated[int, typer.Option(help="Simulated days, ending at today's 00:00 UTC.")]
RulesOpt = Annotated[Path | None, typer.Option(
    "--rules", help="Exposure rules file for the server (TOML/YAML); it must keep the check_in, search_box "
    "and delivery slots. Its experiments show up as arms.")]
RetrainOpt = Annotated[Retrain, typer.Option(
    help="nightly: each night train on the history plus the event log and let the server hot-reload the "
    "model; never: serve the day-0 model throughout.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the mall, its members' hidden tastes and their choices.")]


def simulate(
    out: OutOpt,
    members: MembersOpt = 2000,
    days: DaysOpt = 7,
    rules: RulesOpt = None,
    retrain: RetrainOpt = Retrain.nightly,
    seed: SeedOpt = 7,
) -> None:
    """Drive the real server through simulated days and print CTR per day, slot and arm.

    Day 0 trains on a synthetic history. Each day, members (some daily, others at random) open the
    check_in page, search for a category or brand they like and see the delivery page when an order
    arrives; the server (in this process, with a simulated clock, the embedded Redis and the event log
    on) answers over gRPC, and members click and buy following hidden tastes and a position-biased
    choice model, reported with TrackEvents.

    This is a test of the system (serve -> track -> log -> retrain -> hot reload), NOT an accuracy
    claim: the members and their choice model are invented, so the CTR says nothing about real ones.
    """
    from service import logs
    from training.simulate import SimConfig, run

    console = Console(soft_wrap=True)
    if not console.is_terminal:  # piped or logged: no terminal width to squeeze the tables into
        console = Console(soft_wrap=True, width=160)
    logs.configure("WARNING")  # the screen is for the day lines and tables
    cfg = SimConfig(out=out, members=members, days=days, retrain=retrain.value, seed=seed, rules=rules)
    result = asyncio.run(run(cfg, console))
    print_summary(console, result)
    console.print(f"summary: {out / 'summary.json'}; event log: {out / 'log'} (`mallrec report --log "
                  f"{out / 'log'} --since {result['days'][0]['date'] if result['days'] else '7d'}`)",
                  highlight=False)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def _table(title: str, first: list[str], rows: list[tuple[list[str], dict[str, Any]]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in first:
        table.add_column(name)
    for name in ("impressions", "clicks", "CTR", "purchases", "per impression"):
        table.add_column(name, justify="right")
    for head, c in rows:
        table.add_row(*head, f"{c['impressions']:,}", f"{c['clicks']:,}", _pct(c["ctr"]),
                      f"{c['purchases']:,}", _pct(c["purchase_rate"]))
    return table


def print_summary(console: Console, result: dict[str, Any]) -> None:
    """CTR per day, per slot and per arm (experiment/arm as the server reported them)."""
    days = [([str(d["day"]), d["date"], ", ".join(d["model_versions"])], d) for d in result["days"]]
    console.print(_table("per day", ["day", "date", "model"], days))
    console.print(_table("per slot", ["slot"], [([s], c) for s, c in result["slots"].items()]))
    arms = [([a["experiment"] or "(none)", a["arm"] or "-"], a) for a in result["arms"]]
    console.print(_table("per arm", ["experiment", "arm"], arms))
    t, log = result["totals"], result["log"]
    console.print(f"total: {t['impressions']:,} items served, {t['clicks']:,} clicks (CTR {_pct(t['ctr'])}), "
                  f"{t['purchases']:,} purchases after a click; {result['wall_seconds']:.0f}s",
                  highlight=False)
    mark = "matches" if log["complete"] else "[bold red]does NOT match[/]"
    orphans = log["clicks_without_served_record"]
    console.print(f"event log: {log['records']} — {mark} what the simulator sent and was served"
                  + (f" ({orphans:,} clicks name a request with no served record)" if orphans else ""))
    degraded = sum(d["degraded"] for d in result["days"])
    if degraded:
        unlogged = log["served_in_degraded_responses"]
        console.print(f"[yellow]{degraded:,} responses were degraded ({unlogged:,} items the server does "
                      f"not log); server counters: {result['server']}[/]", highlight=False)
    console.print(f"[dim]{result['note']}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
