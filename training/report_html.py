"""The report as one self-contained HTML page: the table and three plots as inline SVG.

Nothing is loaded when the page opens (no scripts, fonts, stylesheets or images from elsewhere), so it
can be mailed or archived and read offline. Plots are drawn with matplotlib's object API (no pyplot,
so no GUI backend is ever chosen) and written as SVG with text as text.
"""

from __future__ import annotations

import html
import io
import re
from typing import Any

from training.report import ORGANIC, UNKNOWN, Report, wilson

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.organic td { color: #777; font-style: italic; }
.ci { color: #888; font-size: 85%; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots figure { margin: 0; }
.meta { color: #555; }
.srm { color: #b00; font-weight: bold; }
tr.control td { font-weight: bold; }
"""
_SVG_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)  # XML declaration and DOCTYPE (names a DTD URL)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f' <span class="ci">[{100 * ci[0]:.2f}–{100 * ci[1]:.2f}]</span>'


def _svg(fig: Any) -> str:
    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "mallrec-report"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    return _SVG_METADATA.sub("", _SVG_PROLOGUE.sub("", buf.getvalue(), count=1))


def _figure(title: str) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _empty(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#888")


def plot_ctr_slot_day(slot_day: list[dict[str, Any]]) -> str:
    """CTR per slot per exposure day, one line per slot."""
    fig, ax = _figure("CTR per slot per day")
    days = sorted({r["day"] for r in slot_day if r["impressions"]})
    slots = sorted({r["slot"] for r in slot_day if r["impressions"]})
    at = {(r["slot"], r["day"]): r for r in slot_day}
    for slot in slots:
        xs, ys = [], []
        for i, d in enumerate(days):
            r = at.get((slot, d))
            if r and r["impressions"]:
                xs.append(i)
                ys.append(100 * r["clicks"] / r["impressions"])
        ax.plot(xs, ys, marker="o", markersize=3, label=slot)
    if slots:
        step = max(1, len(days) // 10)
        ax.set_xticks(range(0, len(days), step), days[::step], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("CTR (%)")
        ax.legend(fontsize=8, loc="best")
    else:
        _empty(ax)
    return _svg(fig)


def plot_ctr_position(by_position: list[dict[str, Any]], max_positions: int = 40) -> str:
    """CTR by (0-based) position, with 95% Wilson intervals."""
    fig, ax = _figure("CTR by position (0-based)")
    rows = sorted((r for r in by_position if isinstance(r["position"], int) and r["impressions"]),
                  key=lambda r: r["position"])[:max_positions]
    if rows:
        xs = [r["position"] for r in rows]
        ys = [100 * r["clicks"] / r["impressions"] for r in rows]
        cis = [wilson(r["clicks"], r["impressions"]) or (0.0, 0.0) for r in rows]
        err = [[y - 100 * lo for y, (lo, _) in zip(ys, cis, strict=True)],
               [100 * hi - y for y, (_, hi) in zip(ys, cis, strict=True)]]
        ax.bar(xs, ys, yerr=err, capsize=2, color="#4c78a8", ecolor="#555")
        ax.set_xlabel("position")
        ax.set_ylabel("CTR (%)")
    else:
        _empty(ax)
    return _svg(fig)


def plot_impressions_source(by_source: list[dict[str, Any]]) -> str:
    """Impressions by candidate source, largest first."""
    fig, ax = _figure("Impressions by source")
    rows = sorted((r for r in by_source if r["source"] != ORGANIC and r["impressions"]),
                  key=lambda r: r["impressions"])
    if rows:
        ax.barh([str(r["source"]) for r in rows], [r["impressions"] for r in rows], color="#59a14f")
        ax.set_xlabel("impressions")
        ax.grid(axis="x", alpha=0.3)
    else:
        _empty(ax)
    return _svg(fig)


def table_html(report: Report) -> str:
    head = [report.by, "impressions", "members", "clicks", "CTR [95% CI]", "carts", "purchases",
            "conversion [95% CI]", "revenue", "impressions from"]
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in report.rows:
        revenue = "–" if r["revenue"] is None else f"{r['revenue']:,.2f}"
        cells = [html.escape(str(r[report.by])), f"{r['impressions']:,}", f"{r['members']:,}",
                 f"{r['clicks']:,}", pct(r["ctr"]) + _ci(r["ctr_ci"]), f"{r['carts']:,}",
                 f"{r['purchases']:,}", pct(r["conversion"]) + _ci(r["conversion_ci"]), revenue,
                 html.escape(r["impressions_from"] or "–")]
        cls = ' class="organic"' if r["organic"] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _notes(meta: dict[str, Any]) -> str:
    how = meta.get("attribution", {})
    parts = [f"Window {meta.get('since')} to {meta.get('until')}; clicks and carts attributed within "
             f"{meta.get('click_window_s', 0) / 3600:g} h of an exposure, purchases within "
             f"{meta.get('purchase_window_s', 0) / 86400:g} d."]
    for ev, counts in how.items():
        parts.append(f"{ev}: " + ", ".join(f"{n:,} {h}" for h, n in counts.items()))
    if not meta.get("revenue_computed"):
        parts.append("Revenue not computed (no item catalogue given).")
    elif meta.get("purchases_without_price"):
        n = meta["purchases_without_price"]
        parts.append(f"{n:,} purchases of items without a price count 0 revenue.")
    front = sorted(s for s, f in meta.get("impressions_from", {}).items() if f == "frontend")
    if front:
        parts.append(f"Impressions from the frontend for: {', '.join(front)}; others from served records.")
    parts.append(f"{UNKNOWN}: not known from the log; "
                 f"{ORGANIC}: events with no exposure to attribute them to.")
    return "".join(f"<p class=\"meta\">{html.escape(p)}</p>\n" for p in parts)


def render(report: Report, slot_day: list[dict[str, Any]], by_position: list[dict[str, Any]],
           by_source: list[dict[str, Any]], title: str = "mallrec report") -> str:
    """The whole page; the three plot inputs are ``Attribution.slot_day()`` and the rows of reports
    by position and by source."""
    plots = (plot_ctr_slot_day(slot_day), plot_ctr_position(by_position), plot_impressions_source(by_source))
    figures = "\n".join(f"<figure>{svg}</figure>" for svg in plots)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{html.escape(title)} by {html.escape(report.by)}</h1>\n{_notes(report.meta)}"
            f"{table_html(report)}\n<div class=\"plots\">{figures}</div>\n</body></html>\n")


def lift_text(x: float | None, ci: list[float] | None) -> str:
    """A relative lift and its interval in percent: ``+4.1% [+1.2, +7.0]``."""
    if x is None:
        return "–"
    return f"{100 * x:+.1f}%" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")


def money(x: float | None, ci: list[float] | None) -> str:
    return "–" if x is None else f"{x:,.2f}" + (f" [{ci[0]:,.2f}–{ci[1]:,.2f}]" if ci else "")


_VERDICT_COLOUR = {"win": "#2e7d32", "loss": "#c62828"}


def plot_lifts(experiment: str, rows: list[dict[str, Any]]) -> str:
    """Each non-control arm's relative lift over control with its 95% interval, one line per
    (arm, metric); green: a win, red: a loss, grey: no significant difference or not enough data."""
    from training.report_arms import LIFT_FIELD, METRICS, VERDICT_FIELD

    fig, ax = _figure(f"{experiment}: lift against control (95% CI)")
    ax.grid(axis="y", alpha=0)
    ax.grid(axis="x", alpha=0.3)
    names = {"ctr": "CTR", "conversion": "conversion", "revenue_per_member": "revenue/member"}
    points = [(f"{r['arm']} · {names[k]}", r[LIFT_FIELD[k]], r[f"{LIFT_FIELD[k]}_ci"], r[VERDICT_FIELD[k]])
              for r in rows if not r["control"] for k in METRICS if r[LIFT_FIELD[k]] is not None]
    if points:
        for y, (_, x, ci, v) in enumerate(reversed(points)):
            colour = _VERDICT_COLOUR.get(v or "", "#777")
            err = [[100 * (x - ci[0])], [100 * (ci[1] - x)]] if ci else None
            ax.errorbar([100 * x], [y], xerr=err, fmt="o", color=colour, ecolor=colour, capsize=3)
        ax.axvline(0, color="#333", linewidth=0.8)
        ax.set_yticks(range(len(points)), [label for label, *_ in reversed(points)], fontsize=8)
        ax.set_ylim(-0.7, len(points) - 0.3)
        ax.set_xlabel("relative lift (%)")
    else:
        _empty(ax)
    return _svg(fig)


def arms_table_html(report: Report) -> str:
    from training.report_arms import LIFT_FIELD, METRICS, VERDICT_FIELD, say

    head = ["experiment", "arm", "members", "impressions", "clicks", "CTR [95% CI]", "CTR lift",
            "conversion [95% CI]", "conversion lift", "revenue / member", "revenue lift", "verdict (CTR)"]
    controls = {e: b["control"] for e, b in report.meta.get("experiments", {}).items()}
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in report.rows:
        lifts = ["control" if r["control"] else lift_text(r[LIFT_FIELD[k]], r[f"{LIFT_FIELD[k]}_ci"])
                 for k in METRICS]
        ctl = str(controls.get(r["experiment"]))
        cells = [html.escape(r["experiment"]), html.escape(r["arm"]), f"{r['members']:,}",
                 f"{r['impressions']:,}", f"{r['clicks']:,}", pct(r["ctr"]) + _ci(r["ctr_ci"]),
                 html.escape(lifts[0]), pct(r["conversion"]) + _ci(r["conversion_ci"]),
                 html.escape(lifts[1]), html.escape(money(r["revenue_per_member"],
                                                          r["revenue_per_member_ci"])), html.escape(lifts[2]),
                 "" if r["control"] else html.escape(say(r[VERDICT_FIELD["ctr"]], r["arm"], ctl))]
        cls = ' class="control"' if r["control"] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _arm_notes(meta: dict[str, Any]) -> str:
    rule = meta.get("decision", {})
    level = 100 * rule.get("level", 0.95)
    parts = [f"Window {meta.get('since')} to {meta.get('until')}. Intervals are {level:g}% over members "
             f"(the unit of randomisation): delta method for CTR and conversion and for the relative "
             f"lifts. Not enough data yet: an arm or control under {rule.get('min_members')} members, "
             f"or a lift interval wider than ±{100 * rule.get('max_lift_half_width', 0):g}%; an interval "
             f"holding 0: no significant difference; otherwise the arm wins or loses."]
    out = "".join(f"<p class=\"meta\">{html.escape(p)}</p>\n" for p in parts)
    for exp, b in meta.get("experiments", {}).items():
        srm = b["srm"]
        weights = ", ".join(f"{a} {100 * w:.0f}%" for a, w in b["weights"].items())
        p = "–" if srm["p"] is None else f"{srm['p']:.3g}"
        out += (f"<p class=\"meta\">{html.escape(exp)}: control arm {html.escape(str(b['control']))} "
                f"({html.escape(b['control_rule'])}); weights {html.escape(weights)} from "
                f"{html.escape(b['weights_from'])}; SRM p = {p}.</p>\n")
        if srm["warning"]:
            out += f"<p class=\"srm\">SRM {html.escape(exp)}: {html.escape(srm['warning'])}</p>\n"
    return out


def render_arms(report: Report, title: str = "mallrec report") -> str:
    """The ``--by arm`` page: notes (decision rule, weights, SRM), the table, a lift plot per experiment."""
    plots = [plot_lifts(exp, [r for r in report.rows if r["experiment"] == exp])
             for exp in report.meta.get("experiments", {})]
    figures = "\n".join(f"<figure>{svg}</figure>" for svg in plots)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{html.escape(title)} by arm</h1>\n{_arm_notes(report.meta)}"
            f"{arms_table_html(report)}\n<div class=\"plots\">{figures}</div>\n</body></html>\n")
