"""`mallrec report` over a small hand-made event log whose every number is worked out below."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from service.errors import MallrecError
from service.eventlog import files
from service.eventlog.schema import LogRecord, day
from training.report import Attribution, ReportError, build_report, parse_duration, parse_since, wilson
from training.report_cli import register
from training.report_html import render

DAY = 86400
T0 = 20400 * DAY  # 2025-11-08 00:00 UTC
NOW = T0 + 10 * DAY
SINCE = T0 - 4 * DAY  # "--since 14d" from NOW
D0, D1, DOLD = day(T0), day(T0 + DAY), day(SINCE - 100)


def served(rid: str, member: str, item: str, ts: int, slot: str, pos: int, source: str,
           rules: tuple[str, ...] = ()) -> LogRecord:
    return LogRecord(f"s-{rid}-{item}", member, item, "served", ts, slot=slot, position=pos, request_id=rid,
                     source=source, model_version="m1", rules_version="r1", rules=rules)


def ev(eid: str, member: str, item: str, event: str, ts: int, qty: int = 1, rid: str = "",
       slot: str = "") -> LogRecord:
    return LogRecord(eid, member, item, event, ts, quantity=qty, request_id=rid, slot=slot)


# home: served only (5 impressions, m1 and m2); cart_page: frontend impressions (3 of 4 served items)
RECORDS = [
    served("r1", "m1", "a", T0 + 100, "home", 0, "als", ("pin",)),
    served("r1", "m1", "b", T0 + 100, "home", 1, "popular"),
    served("r1", "m1", "c", T0 + 100, "home", 2, "als", ("boost", "pin")),
    served("r2", "m2", "a", T0 + DAY + 100, "home", 0, "als", ("pin",)),
    served("r2", "m2", "b", T0 + DAY + 100, "home", 1, "popular"),
    served("r3", "m1", "d", T0 + 200, "cart_page", 0, "similar"),
    served("r3", "m1", "e", T0 + 200, "cart_page", 1, "similar"),
    served("r4", "m3", "d", T0 + 300, "cart_page", 0, "similar"),
    served("r4", "m3", "e", T0 + 300, "cart_page", 1, "similar"),
    LogRecord("i1", "m1", "d", "impression", T0 + 210, slot="cart_page", position=0, request_id="r3"),
    LogRecord("i2", "m3", "d", "impression", T0 + 310, slot="cart_page", position=0, request_id="r4"),
    LogRecord("i3", "m3", "e", "impression", T0 + 311, request_id="r4"),  # slot, position from r4
    # before the window, inside the look-back: not counted, but its click is attributed to it
    served("r0", "m9", "a", SINCE - 100, "home", 0, "als", ("pin",)),
    ev("old-click", "m9", "a", "click", SINCE + 50),
    ev("ancient", "m2", "a", "purchase", T0 - 20 * DAY),  # before the look-back: never read
    ev("e1", "m1", "a", "click", T0 + 150, rid="r1", slot="home"),  # request
    ev("e2", "m2", "b", "click", T0 + DAY + 200),  # window: r2's b
    ev("edge", "m1", "b", "click", T0 + 100 + DAY),  # window: exactly 24 h after r1's b
    ev("e3", "m1", "c", "click", T0 + 100 + DAY + 1),  # 24 h + 1 s after r1's c: organic
    ev("e4", "m3", "e", "cart", T0 + 400, rid="r4", slot="cart_page"),  # request
    ev("e5", "m3", "e", "purchase", T0 + 300 + 6 * DAY, qty=2),  # window (7 d): impression i3
    ev("e6", "m1", "d", "purchase", T0 + 500, rid="rX", slot="cart_page"),  # slot: rX was never served
    ev("e7", "m2", "z", "purchase", T0 + 1000),  # organic
    ev("e8", "m1", "d", "click", T0 + 220, rid="rY"),  # unknown request, no slot: window (impression i1)
    ev("e9", "m1", "a", "purchase", T0 + 600, qty=3, rid="r1", slot="home"),  # request
    ev("e10", "m5", "q", "cart", T0 + 700, slot="home"),  # names a slot, no exposure: slot
]
PRICES = "item_id,price,category\na,10,x\nb,4,x\nc,7,x\ne,12.5,y\nz,100,y\nq,oops,y\n"  # no d


def write_log(root: Path, records: list[LogRecord]) -> Path:
    files.write_batch(root, records, "1-0", "1-1")  # the sink's writer: one file per day
    return root


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    (root / "items.csv").write_text(PRICES)
    return write_log(root / "log", RECORDS), root / "items.csv"


@pytest.fixture(scope="module")
def att(paths) -> Attribution:
    log, items = paths
    return Attribution(log, SINCE, items=items, now=NOW)


def rows(att: Attribution, by: str) -> dict:
    return {r[by]: r for r in att.report(by).rows}


def pick(row: dict, *names: str) -> tuple:
    return tuple(row[n] for n in names)


COUNTS = ("impressions", "members", "clicks", "carts", "purchases", "revenue")


def test_by_slot_attribution_and_frontend_override(att):
    got = rows(att, "slot")
    assert list(got) == ["home", "cart_page", "(organic)"]
    assert pick(got["home"], *COUNTS, "impressions_from") == (5, 2, 4, 1, 1, 30.0, "served")
    assert pick(got["cart_page"], *COUNTS, "impressions_from") == (3, 2, 1, 1, 2, 25.0, "frontend")
    assert got["cart_page"]["purchases_without_price"] == 1  # d has no price
    assert got["cart_page"]["units"] == 3
    organic = got["(organic)"]
    assert pick(organic, *COUNTS, "impressions_from", "organic") == (0, 0, 1, 0, 1, 100.0, None, True)
    assert organic["ctr"] is None and organic["ctr_ci"] is None
    assert got["home"]["ctr"] == pytest.approx(4 / 5)
    assert got["cart_page"]["conversion"] == pytest.approx(2 / 3)


def test_attribution_counts_and_meta(att):
    meta = att.meta()
    assert meta["attribution"] == {
        "click": {"request": 1, "slot": 0, "window": 4, "organic": 1},
        "cart": {"request": 1, "slot": 1, "window": 0, "organic": 0},
        "purchase": {"request": 1, "slot": 1, "window": 1, "organic": 1},
    }
    assert meta["impressions_from"] == {"cart_page": "frontend", "home": "served"}
    assert meta["totals"] == {"impressions": 8, "members": 3, "click": 6, "cart": 2, "purchase": 4}
    assert meta["purchases_without_price"] == 1 and meta["revenue_computed"] is True
    assert meta["since"] == "2025-11-04T00:00:00Z"


def test_windows_are_configurable(paths):
    log, _ = paths
    wide = Attribution(log, SINCE, click_window=DAY + 1, purchase_window=DAY, now=NOW)
    how = wide.meta()["attribution"]
    assert how["click"]["organic"] == 0  # e3 is now inside the click window
    assert how["purchase"] == {"request": 1, "slot": 1, "window": 0, "organic": 2}  # e5 is not
    first = wide.report().rows[0]
    assert first["revenue"] is None and first["purchases_without_price"] is None  # no catalogue


def test_by_source(att):
    got = rows(att, "source")
    assert pick(got["als"], *COUNTS) == (3, 2, 2, 0, 1, 30.0)
    assert pick(got["popular"], *COUNTS) == (2, 2, 2, 0, 0, 0.0)
    assert pick(got["similar"], *COUNTS, "impressions_from") == (3, 2, 1, 1, 1, 25.0, "frontend")
    assert pick(got["(unknown)"], *COUNTS) == (0, 0, 0, 1, 1, 0.0)
    assert list(got)[-2:] == ["(unknown)", "(organic)"]


def test_by_position(att):
    got = rows(att, "position")
    assert list(got) == [0, 1, 2, "(unknown)", "(organic)"]
    assert pick(got[0], "impressions", "clicks", "purchases", "impressions_from") == (4, 3, 1, "mixed")
    assert pick(got[1], "impressions", "clicks", "carts", "purchases") == (3, 2, 1, 1)
    assert pick(got[2], "impressions", "clicks") == (1, 0)
    assert pick(got["(unknown)"], "impressions", "carts", "purchases") == (0, 1, 1)


def test_by_day(att):
    got = rows(att, "day")
    assert list(got) == [DOLD, D0, D1, "(organic)"]
    assert pick(got[D0], *COUNTS) == (6, 2, 3, 2, 3, 55.0)
    assert pick(got[D1], *COUNTS) == (2, 1, 1, 0, 0, 0.0)
    assert pick(got[DOLD], "impressions", "clicks") == (0, 1)  # the look-back exposure's click


def test_by_rule(att):
    got = rows(att, "rule")
    assert pick(got["pin"], *COUNTS) == (3, 2, 2, 0, 1, 30.0)
    assert pick(got["boost"], *COUNTS) == (1, 1, 0, 0, 0, 0.0)
    assert pick(got["(none)"], *COUNTS) == (5, 3, 3, 1, 1, 25.0)
    assert pick(got["(unknown)"], "impressions", "carts", "purchases") == (0, 1, 1)


def test_slot_day_for_the_plot(att):
    assert att.slot_day() == [
        {"slot": "cart_page", "day": D0, "impressions": 3, "clicks": 1},
        {"slot": "home", "day": DOLD, "impressions": 0, "clicks": 1},
        {"slot": "home", "day": D0, "impressions": 3, "clicks": 2},
        {"slot": "home", "day": D1, "impressions": 2, "clicks": 1},
    ]


def test_wilson_by_hand():
    k, n, z = 4, 5, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = wilson(k, n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert (lo, hi) == pytest.approx((0.3755, 0.9638), abs=1e-4)  # the published 4/5 interval
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(7, 5) == wilson(5, 5) and wilson(1, 0) is None


def test_row_cis_are_wilson(att):
    home = rows(att, "slot")["home"]
    assert home["ctr_ci"] == pytest.approx(list(wilson(4, 5)))
    assert home["conversion_ci"] == pytest.approx(list(wilson(1, 5)))


def test_parse_since_and_durations():
    assert parse_since("7d", NOW) == NOW - 7 * DAY
    assert parse_since("24h", NOW) == NOW - DAY and parse_since("90m", NOW) == NOW - 5400
    assert parse_since("2025-11-08", NOW) == T0
    assert parse_since("2025-11-08T08:00+08:00", NOW) == T0
    assert parse_duration("1.5h", "--x") == 5400
    for bad in ("yesterday", "7x", "-3d", "0d", "2030-01-01"):
        with pytest.raises(ReportError, match="--since"):
            parse_since(bad, NOW)


def test_errors(tmp_path, paths):
    log, items = paths
    with pytest.raises(ReportError, match="no such folder"):
        Attribution(tmp_path / "nope", SINCE, now=NOW)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no event log files"):
        Attribution(tmp_path / "empty", SINCE, now=NOW)
    with pytest.raises(ReportError, match="no event log files"):  # only days before the window
        Attribution(log, NOW + DAY, now=NOW + 2 * DAY)
    with pytest.raises(ReportError, match="--by takes one of"):
        build_report(log, by="member", since="14d", now=NOW)
    with pytest.raises(ReportError, match="--click-window"):
        build_report(log, click_window="soon", now=NOW)
    bad = tmp_path / "items.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ReportError, match="cannot read the items file"):
        Attribution(log, SINCE, items=bad, now=NOW)
    no_price = tmp_path / "items.csv"
    no_price.write_text("item_id,category\na,x\n")
    with pytest.raises(ReportError, match="no 'price' column"):
        Attribution(log, SINCE, items=no_price, now=NOW)
    with pytest.raises(ReportError, match="unsupported"):
        Attribution(log, SINCE, items=tmp_path / "items.xlsx", now=NOW)
    with pytest.raises(ReportError, match="not found"):
        Attribution(log, SINCE, items=tmp_path / "missing.csv", now=NOW)
    assert issubclass(ReportError, MallrecError)


def test_items_as_parquet(tmp_path, paths):
    import pyarrow as pa

    log, _ = paths
    items = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": ["a", "e", "z"], "price": [10.0, 12.5, 100.0]}), items)
    got = {r["slot"]: r["revenue"] for r in Attribution(log, SINCE, items=items, now=NOW).report().rows}
    assert got == {"home": 30.0, "cart_page": 25.0, "(organic)": 100.0}


def test_html_is_self_contained(att):
    rep = att.report("slot")
    page = render(rep, att.slot_day(), att.report("position").rows, att.report("source").rows)
    assert page.count("<svg") == 3 and "cart_page" in page and "(organic)" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    for loader in ("<script", "<link", "@import", "<img", "<!DOCTYPE svg"):
        assert loader not in page


def test_cli_json_and_html(tmp_path, paths):
    log, items = paths
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # two commands, so "report" stays a subcommand
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    args = ["report", "--log", str(log), "--items", str(items), "--since", "2025-11-04", "--by", "source",
            "--json", str(out_json), "--html", str(out_html)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "similar" in result.output and "click: 1 by request" in result.output
    data = json.loads(out_json.read_text())
    assert data["by"] == "source" and data["attribution"]["purchase"]["organic"] == 1
    first = data["rows"][0]
    assert set(first) >= {"source", "impressions", "members", "clicks", "ctr", "ctr_ci", "carts", "purchases",
                          "conversion", "conversion_ci", "revenue", "impressions_from"}
    assert len(first["ctr_ci"]) == 2 and first["ctr_ci"][0] <= first["ctr"] <= first["ctr_ci"][1]
    assert "<svg" in out_html.read_text()
    bad = CliRunner().invoke(app, ["report", "--log", str(log), "--since", "last week"])
    assert isinstance(bad.exception, ReportError) and "--since" in str(bad.exception)


def test_a_tie_in_the_same_second_is_attributed_the_same_way_every_time(tmp_path):
    """Two slots of one page show the item in the same second; the purchase names neither: the window
    attribution must not pick one at random (ts are whole seconds)."""
    recs = [served(f"r{k}", f"m{k}", "a", T0, slot, 0, "als")
            for k in range(2000) for slot in ("alpha", "zeta")]
    recs += [ev(f"p{k}", f"m{k}", "a", "purchase", T0 + 60) for k in range(2000)]
    log = write_log(tmp_path / "log", recs)
    runs = [{s: r["purchases"] for s, r in rows(Attribution(log, SINCE, now=NOW), "slot").items()}
            for _ in range(4)]
    assert all(r == runs[0] for r in runs)
    assert runs[0]["zeta"] == 2000 and runs[0]["alpha"] == 0  # within a second: the last by slot name
