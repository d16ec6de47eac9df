"""`mallrec report`: the typer command over training.report (DuckDB and matplotlib load inside it, so
`mallrec --help` stays instant)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

LogOpt = Annotated[Path, typer.Option(
    "--log", help="Event log folder (LOG_DIR/date=YYYY-MM-DD/part-*.parquet).")]
ItemsOpt = Annotated[Path | None, typer.Option(
    "--items", help="Item catalogue (CSV or Parquet) with item_id and price; without it, no revenue.")]
SinceOpt = Annotated[str, typer.Option(
    "--since", help="Start of the window: 7d, 24h, 90m back from now, or an ISO date/time "
                    "(UTC unless it names a zone).")]
ByOpt = Annotated[str, typer.Option(
    "--by", help="One row per slot, source, position (0-based), day (the exposure's UTC day), rule "
                 "(exposure rules: an item with several counts under each) or arm (experiment arms, "
                 "compared member by member with control).")]
ExperimentOpt = Annotated[str | None, typer.Option(
    "--experiment", help="With --by arm: this experiment only (default: every experiment in the window).")]
RulesOpt = Annotated[Path | None, typer.Option(
    "--rules", help="With --by arm: the rules file whose [experiments.NAME.arms] weights the sample-ratio "
                    "check expects (default: equal weights).")]
JsonOpt = Annotated[Path | None, typer.Option(
    "--json", help="Also write the rows and how they were computed as JSON here.")]
HtmlOpt = Annotated[Path | None, typer.Option(
    "--html", help="Also write a self-contained HTML page (table and plots) here.")]
ClickWindowOpt = Annotated[str, typer.Option(
    "--click-window", help="A click or add-to-cart without a served record of its request counts for the "
                           "member's latest exposure of the item at most this long before it.")]
PurchaseWindowOpt = Annotated[str, typer.Option("--purchase-window", help="The same for purchases.")]


def report(
    log: LogOpt,
    items: ItemsOpt = None,
    since: SinceOpt = "7d",
    by: ByOpt = "slot",
    json_out: JsonOpt = None,
    html_out: HtmlOpt = None,
    click_window: ClickWindowOpt = "24h",
    purchase_window: PurchaseWindowOpt = "7d",
    experiment: ExperimentOpt = None,
    rules: RulesOpt = None,
) -> None:
    """What each slot earns: impressions, reach, clicks, add-to-carts, purchases and revenue from the
    event log, with 95% Wilson intervals on CTR and conversion. Events with no exposure to attribute
    them to are reported as (organic). --by arm: which arm of each experiment wins, with member-level
    intervals, lifts against control and a sample-ratio check."""
    from rich.console import Console

    from training.report import build_report

    err = Console(stderr=True, highlight=False)
    with err.status("reading the event log"):
        rep, att = build_report(log, since=since, by=by, items=items, click_window=click_window,
                                purchase_window=purchase_window, experiment=experiment, rules=rules)
    out = Console(soft_wrap=True)
    if rep.by == "arm":
        print_arms(rep, out)
    else:
        print_table(rep, out)
    for line in summary(rep.meta):
        err.print(line)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rep.to_json(), indent=2))
        err.print(f"JSON written to {json_out}")
    if html_out:
        from training.report_html import render, render_arms

        with err.status("drawing the plots"):
            page = (render_arms(rep) if rep.by == "arm" else
                    render(rep, att.slot_day(), att.report("position").rows, att.report("source").rows))
        html_out.parent.mkdir(parents=True, exist_ok=True)
        html_out.write_text(page, encoding="utf-8")
        err.print(f"HTML written to {html_out}")


def summary(meta: dict[str, Any]) -> list[str]:
    """What the table cannot show: the window, how events were attributed, missing prices."""
    lines = [f"window: {meta['since']} to {meta['until']} ({meta['files']} log files); "
             f"impressions from the frontend for: "
             f"{', '.join(s for s, f in meta['impressions_from'].items() if f == 'frontend') or 'no slot'}"]
    for ev, counts in meta["attribution"].items():
        lines.append(f"{ev}: " + ", ".join(f"{n:,} by {h}" if h != "organic" else f"{n:,} organic"
                                           for h, n in counts.items()))
    if not meta["revenue_computed"]:
        lines.append("revenue: not computed (give --items)")
    elif meta["purchases_without_price"]:
        n = meta["purchases_without_price"]
        lines.append(f"revenue: {n:,} purchases of items without a price count 0")
    return lines


def print_table(rep: Any, console: Any) -> None:
    from rich.table import Table

    from training.report_html import pct

    table = Table(title=f"slot report by {rep.by}")
    table.add_column(rep.by)
    for name in ("impressions", "members", "clicks", "CTR [95% CI]", "carts", "purchases",
                 "conversion [95% CI]", "revenue", "from"):
        table.add_column(name, justify="right")
    for r in rep.rows:
        table.add_row(
            str(r[rep.by]), f"{r['impressions']:,}", f"{r['members']:,}", f"{r['clicks']:,}",
            _with_ci(r["ctr"], r["ctr_ci"], pct), f"{r['carts']:,}", f"{r['purchases']:,}",
            _with_ci(r["conversion"], r["conversion_ci"], pct),
            "–" if r["revenue"] is None else f"{r['revenue']:,.2f}", r["impressions_from"] or "–",
            style="dim" if r["organic"] else None)
    if not console.is_terminal:  # piped output has no width: do not squeeze the numbers
        from rich.console import Console

        console = Console(soft_wrap=True, width=200)
    console.print(table)


def print_arms(rep: Any, console: Any) -> None:
    """The arms table, then per experiment: control, weights, the SRM check (a red line when it fails)
    and each arm's verdicts."""
    from rich.markup import escape
    from rich.table import Table

    from training.report_arms import LIFT_FIELD, METRICS, VERDICT_FIELD, say
    from training.report_html import lift_text, money, pct

    table = Table(title="arms (95% intervals over members)")
    for name in ("experiment", "arm"):
        table.add_column(name)
    for name in ("members", "impressions", "clicks", "CTR", "CTR lift", "conversion", "conversion lift",
                 "revenue / member", "revenue lift"):
        table.add_column(name, justify="right")
    for r in rep.rows:
        lifts = ["control" if r["control"] else lift_text(r[LIFT_FIELD[k]], r[f"{LIFT_FIELD[k]}_ci"])
                 for k in METRICS]
        table.add_row(
            escape(r["experiment"]), escape(r["arm"]), f"{r['members']:,}", f"{r['impressions']:,}",
            f"{r['clicks']:,}", _with_ci(r["ctr"], r["ctr_ci"], pct), lifts[0],
            _with_ci(r["conversion"], r["conversion_ci"], pct), lifts[1],
            money(r["revenue_per_member"], r["revenue_per_member_ci"]), lifts[2],
            style="bold" if r["control"] else None)
    if not console.is_terminal:
        from rich.console import Console

        console = Console(soft_wrap=True, width=240)
    console.print(table)
    names = {"ctr": "CTR", "conversion": "conversion", "revenue_per_member": "revenue per member"}
    for exp, block in rep.meta["experiments"].items():
        weights = ", ".join(f"{a} {100 * w:.0f}%" for a, w in block["weights"].items())
        srm = block["srm"]
        p = "–" if srm["p"] is None else f"{srm['p']:.3g}"
        control = str(block["control"])
        console.print(f"{escape(exp)}: control arm {escape(control)} ({escape(block['control_rule'])}); "
                      f"weights {escape(weights)} from {escape(block['weights_from'])}; SRM p = {p}",
                      highlight=False)
        if srm["warning"]:
            console.print(f"[bold red]SRM {escape(exp)}: {escape(srm['warning'])}[/]", highlight=False)
        if block["members_in_several_arms"]:
            console.print(f"[yellow]{escape(exp)}: {block['members_in_several_arms']:,} members were exposed "
                          f"under several arms and are left out[/]", highlight=False)
        for r in rep.rows:
            if r["experiment"] != exp or r["control"]:
                continue
            said = [f"{names[k]} {say(r[VERDICT_FIELD[k]], r['arm'], control)}" for k in METRICS
                    if r[VERDICT_FIELD[k]] is not None]
            caveat = " (SRM: do not trust)" if srm["warning"] else ""
            console.print(f"  {escape(r['arm'])} vs {escape(control)}{caveat}: {escape('; '.join(said))}",
                          highlight=False)


def _with_ci(x: float | None, ci: list[float] | None, fmt: Any) -> str:
    return fmt(x) if not ci else f"{fmt(x)} [{100 * ci[0]:.2f}–{100 * ci[1]:.2f}]"


def register(app: typer.Typer) -> None:
    app.command("report")(report)
