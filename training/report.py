"""`mallrec report`: what each slot earns, computed by DuckDB over the event log's Parquet files.

Exposures are the service's ``served`` records and the frontend's ``impression`` records. A slot
whose frontend reports impressions is counted from those (the frontend saw the item); any other slot
from ``served`` (the service returned it; the member may never have scrolled to it).

Click, cart and purchase events are attributed in this order:

1. ``request``: the served record with the event's request_id and item_id;
2. ``slot``: an event with a request_id whose served record is missing, but that names a slot,
   belongs to that slot (source and position unknown);
3. ``window``: the member's latest exposure (served or impression) of the item within the window
   before the event (clicks and carts: ``click_window``; purchases: ``purchase_window``);
4. ``slot``: an event that names a slot but had no exposure in the window goes to that slot;
5. ``organic``: everything else, reported as its own row.

Exposures are read from ``since - max(window)`` on, so an event early in the window still finds its
exposure; only exposures and events from ``since`` on are counted.

Experiments: exposures carry the ``experiment`` and ``arm`` of their served record (an impression its
own when the frontend sends them), and attributed events those of their exposure, never their own;
``--by arm`` (``training.report_arms``) compares the arms member by member.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.errors import MallrecError
from service.eventlog.schema import day, log_files, with_log_files
from training import input_files

BY = ("slot", "source", "position", "day", "rule")  # group keys of ``Attribution.group``
REPORT_BY = (*BY, "arm")
HOW = ("request", "slot", "window", "organic")
ATTRIBUTED_EVENTS = ("click", "cart", "purchase")
ORGANIC, UNKNOWN, NO_RULE = "(organic)", "(unknown)", "(none)"
Z95 = 1.959963984540054  # two-sided 95% normal quantile
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


class ReportError(MallrecError):
    """A report we cannot make as asked (no log, bad flag, unreadable catalogue)."""


def parse_duration(text: str, flag: str) -> int:
    """``90m``, ``24h``, ``7d``, ``2w``, ``30s`` as whole seconds (> 0)."""
    m = _DURATION.match(text)
    seconds = int(float(m.group(1)) * input_files.SPANS[m.group(2).lower()]) if m else 0
    if seconds <= 0:
        raise ReportError(f"{flag} takes a duration such as 90m, 24h or 7d, not {text!r}")
    return seconds


def parse_since(text: str, now: float) -> float:
    """``--since`` as the trainer reads it (a span back from ``now`` or an ISO date/time, UTC unless it
    names a zone), as epoch seconds; a report's window must start in the past."""
    try:
        since = float(input_files.parse_since(text, now))
    except input_files.InputError as e:
        raise ReportError(str(e)) from None
    if since >= now:
        raise ReportError(f"--since {text} is not in the past: nothing to report yet")
    return since


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for k successes in n trials (None when n is 0). Repeat clicks can exceed
    impressions, so k is capped at n: the interval then says "every impression", not more."""
    if n <= 0:
        return None
    p, z2 = min(max(k, 0), n) / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _key(by: str, events: bool) -> str:
    """The SQL for one row's group label (``by=rule`` unnests: one row per rule)."""
    organic = "how = 'organic'" if events else "false"
    if by == "rule":
        return (f"unnest(CASE WHEN {organic} THEN ['{ORGANIC}'] WHEN rules IS NULL THEN ['{UNKNOWN}'] "
                f"WHEN len(rules) = 0 THEN ['{NO_RULE}'] ELSE rules END)")
    label = {
        "slot": f"CASE WHEN slot = '' THEN '{UNKNOWN}' ELSE slot END",
        "source": f"CASE WHEN source = '' THEN '{UNKNOWN}' ELSE source END",
        "position": f"CASE WHEN position < 0 THEN '{UNKNOWN}' ELSE CAST(position AS VARCHAR) END",
        "day": "CAST(DATE '1970-01-01' + CAST(x_ts // 86400 AS INTEGER) AS VARCHAR)",
    }[by]
    return f"CASE WHEN {organic} THEN '{ORGANIC}' ELSE {label} END"


_PREPARE = """
CREATE TEMP TABLE served AS  -- one served record per (request_id, item_id), for the lookups
SELECT DISTINCT ON (request_id, item_id) request_id, item_id, ts, slot, position, source, rules,
       experiment, arm
FROM log WHERE event = 'served' AND request_id <> ''
ORDER BY request_id, item_id, ts, slot, position;

CREATE TEMP TABLE exposure0 AS
SELECT 'served' AS kind, member_id, item_id, ts, slot, position, source, rules, experiment, arm FROM log
WHERE event = 'served'
UNION ALL
SELECT 'impression', i.member_id, i.item_id, i.ts,
       CASE WHEN i.slot <> '' THEN i.slot ELSE coalesce(s.slot, '') END,
       CASE WHEN i.position >= 0 THEN i.position ELSE coalesce(s.position, -1) END,
       coalesce(s.source, i.source), s.rules,
       CASE WHEN i.experiment <> '' THEN i.experiment ELSE coalesce(s.experiment, '') END,
       CASE WHEN i.experiment <> '' THEN i.arm ELSE coalesce(s.arm, '') END
FROM log i LEFT JOIN served s ON i.request_id = s.request_id AND i.item_id = s.item_id
WHERE i.event = 'impression';

-- ts in whole seconds ties (two slots of one page show an item in the same second): k orders an
-- exposure after every earlier second and, within one second, by kind, slot, position and source,
-- so the window attribution below picks the same exposure on every run
CREATE TEMP TABLE exposure AS
SELECT *, ts * 1000 + least(row_number() OVER (PARTITION BY member_id, item_id, ts
                                               ORDER BY kind, slot, position, source), 999) AS k
FROM exposure0;

CREATE TEMP TABLE frontend_slots AS
SELECT DISTINCT slot FROM exposure WHERE kind = 'impression' AND ts >= $since;

CREATE TEMP TABLE counted AS
SELECT x.*, x.ts AS x_ts FROM exposure x LEFT JOIN frontend_slots f ON x.slot = f.slot
WHERE x.ts >= $since AND (x.kind = 'impression') = (f.slot IS NOT NULL);

CREATE TEMP TABLE ev AS
SELECT row_number() OVER () AS eid, member_id, item_id, event, ts, quantity, slot, request_id
FROM log WHERE event IN ('click', 'cart', 'purchase') AND ts >= $since;

CREATE TEMP TABLE by_request AS
SELECT e.eid, s.ts AS x_ts, s.slot, s.position, s.source, s.rules, s.experiment, s.arm
FROM ev e JOIN served s ON e.request_id = s.request_id AND e.item_id = s.item_id;

CREATE TEMP TABLE by_window AS
SELECT e.eid, x.ts AS x_ts, x.slot, x.position, x.source, x.rules, x.experiment, x.arm
FROM (SELECT ev.* FROM ev LEFT JOIN by_request r ON ev.eid = r.eid
      WHERE r.eid IS NULL AND NOT (ev.request_id <> '' AND ev.slot <> '')) e
ASOF JOIN exposure x ON e.member_id = x.member_id AND e.item_id = x.item_id AND e.ts * 1000 + 999 >= x.k
WHERE x.ts >= e.ts - CASE WHEN e.event = 'purchase' THEN $purchase_window ELSE $click_window END;

CREATE TEMP TABLE attributed AS
SELECT e.eid, e.member_id, e.item_id, e.event, e.ts, e.quantity,
       CASE WHEN r.eid IS NOT NULL THEN 'request' WHEN e.request_id <> '' AND e.slot <> '' THEN 'slot'
            WHEN w.eid IS NOT NULL THEN 'window' WHEN e.slot <> '' THEN 'slot' ELSE 'organic' END AS how,
       coalesce(r.x_ts, w.x_ts, e.ts) AS x_ts,  -- the exposure's time; the event's own when unknown
       coalesce(r.slot, w.slot, e.slot) AS slot,
       coalesce(r.position, w.position, -1) AS position,
       coalesce(r.source, w.source, '') AS source,
       CASE WHEN r.eid IS NOT NULL THEN r.rules ELSE w.rules END AS rules,  -- NULL: unknown
       coalesce(r.experiment, w.experiment, '') AS experiment,  -- the exposure's, never the event's
       coalesce(r.arm, w.arm, '') AS arm
FROM ev e LEFT JOIN by_request r ON e.eid = r.eid LEFT JOIN by_window w ON e.eid = w.eid;
"""

_GROUP = """
WITH imp AS (SELECT {ikeys}, kind, member_id FROM counted),
imp_g AS (SELECT {cols}, count(*) AS impressions, count(DISTINCT member_id) AS members,
                 bool_or(kind = 'impression') AS frontend, bool_or(kind = 'served') AS served
          FROM imp GROUP BY ALL),
evs AS (SELECT {ekeys}, a.event, a.quantity, p.price FROM attributed a LEFT JOIN items p USING (item_id)),
ev_g AS (SELECT {cols}, count(*) FILTER (event = 'click') AS clicks,
                count(*) FILTER (event = 'cart') AS carts,
                count(*) FILTER (event = 'purchase') AS purchases,
                coalesce(sum(quantity) FILTER (event = 'purchase'), 0) AS units,
                coalesce(sum(price * quantity) FILTER (event = 'purchase'), 0) AS revenue,
                count(*) FILTER (event = 'purchase' AND price IS NULL) AS unpriced
         FROM evs GROUP BY ALL)
SELECT {joined}, coalesce(i.impressions, 0), coalesce(i.members, 0), coalesce(e.clicks, 0),
       coalesce(e.carts, 0), coalesce(e.purchases, 0), coalesce(e.units, 0), coalesce(e.revenue, 0),
       coalesce(e.unpriced, 0), coalesce(i.frontend, false), coalesce(i.served, false)
FROM imp_g i FULL OUTER JOIN ev_g e ON {on}
"""


@dataclass
class Report:
    """One report: a row per group (``by`` names the key field) and what it was computed from."""

    by: str
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, **self.meta, "rows": self.rows}


class Attribution:
    """The window's exposures and attributed events, held in an in-memory DuckDB; ``report`` groups
    them by any key without reading the log again."""

    def __init__(self, log_dir: Path, since: float, *, items: Path | None = None,
                 click_window: int = 86400, purchase_window: int = 7 * 86400, now: float | None = None):
        import duckdb

        self.log_dir, self.since, self.items = Path(log_dir), float(since), items
        self.click_window, self.purchase_window = int(click_window), int(purchase_window)
        self.now = time.time() if now is None else float(now)
        if not self.log_dir.is_dir():
            raise ReportError(f"{self.log_dir}: no such folder (expected the event log: "
                              f"date=YYYY-MM-DD/part-*.parquet)")
        if not log_files(self.log_dir, self.since):
            raise ReportError(f"{self.log_dir}: no event log files from {day(self.since)} on")
        lookback = int(self.since) - max(self.click_window, self.purchase_window)
        self.con = duckdb.connect()
        self.con.execute("SET enable_progress_bar = false")  # the CLI shows its own status

        def load(files: list[Path]) -> int:
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE log AS SELECT member_id, item_id, event, ts, quantity, slot, "
                "position, request_id, source, rules, experiment, arm "
                "FROM read_parquet($files, hive_partitioning = false) "
                "WHERE ts >= $lo AND event IN ('served', 'impression', 'click', 'cart', 'purchase')",
                {"files": [str(p) for p in files], "lo": lookback})
            return len(files)

        try:
            self.files = with_log_files(self.log_dir, load, lookback)
        except duckdb.Error as e:
            raise ReportError(f"{self.log_dir}: cannot read the event log ({_first_line(e)})") from e
        if not self._one(f"SELECT count(*) FROM log WHERE ts >= {int(self.since)}"):
            raise ReportError(f"{self.log_dir}: no served, impression, click, cart or purchase records "
                              f"since {_iso(self.since)}")
        self._load_items()
        values = {"$since": int(self.since), "$click_window": self.click_window,
                  "$purchase_window": self.purchase_window}
        self.con.execute(re.sub(r"\$\w+", lambda m: str(values[m.group(0)]), _PREPARE))

    def _one(self, sql: str) -> Any:
        return self.row(sql)[0]

    def row(self, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
        """The one row of an aggregate query (no GROUP BY: it always has one)."""
        row = self.con.execute(sql, params).fetchone()
        assert row is not None, sql
        return row

    def _load_items(self) -> None:
        """``items(item_id, price)``, one row per item; empty (and no revenue) without ``--items``."""
        import duckdb

        if self.items is None:
            self.con.execute("CREATE TEMP TABLE items (item_id VARCHAR, price DOUBLE)")
            return
        path = Path(self.items)
        fmt = next((f for suffix, f in input_files.FORMATS if path.name.lower().endswith(suffix)), None)
        if fmt is None:
            raise ReportError(f"{path}: unsupported items file type (use .csv, .csv.gz, .parquet or .pq)")
        if not path.is_file():
            raise ReportError(f"{path}: items file not found")
        reader = ("read_csv($path, header = true, all_varchar = true)" if fmt == "csv"
                  else "read_parquet($path)")
        try:
            names = [r[0].lower() for r in self.con.execute(f"DESCRIBE SELECT * FROM {reader}",
                                                            {"path": str(path)}).fetchall()]
            missing = [c for c in ("item_id", "price") if c not in names]
            if missing:
                raise ReportError(f"{path}: the items file has no {missing[0]!r} column "
                                  f"(columns found: {', '.join(names) or 'none'})")
            self.con.execute(
                f"CREATE TEMP TABLE items AS SELECT CAST(item_id AS VARCHAR) AS item_id, "
                f"max(TRY_CAST(price AS DOUBLE)) AS price FROM {reader} WHERE item_id IS NOT NULL "
                f"GROUP BY 1", {"path": str(path)})
        except duckdb.Error as e:  # not CSV, not Parquet, unreadable
            raise ReportError(f"{path}: cannot read the items file ({_first_line(e)})") from e

    def group(self, *by: str) -> list[tuple[Any, ...]]:
        """Raw grouped rows: the ``by`` labels, then impressions, members, clicks, carts, purchases,
        units, revenue, purchases without a price, any frontend impressions, any served ones."""
        for b in by:
            if b not in BY:
                raise ReportError(f"--by takes one of {', '.join(BY)}, not {b!r}")
        cols = [f"k{n}" for n in range(len(by))]
        sql = _GROUP.format(
            ikeys=", ".join(f"{_key(b, False)} AS {c}" for b, c in zip(by, cols, strict=True)),
            ekeys=", ".join(f"{_key(b, True)} AS {c}" for b, c in zip(by, cols, strict=True)),
            cols=", ".join(cols), joined=", ".join(f"coalesce(i.{c}, e.{c})" for c in cols),
            on=" AND ".join(f"i.{c} = e.{c}" for c in cols))
        return self.con.execute(sql).fetchall()

    def report(self, by: str = "slot") -> Report:
        rows = [_row(by, r[0], *r[1:]) for r in self.group(by)]
        rows.sort(key=lambda r: _order(by, r[by], r["impressions"]))
        if self.items is None:
            for r in rows:
                r["revenue"] = r["purchases_without_price"] = None
        return Report(by, rows, self.meta())

    def slot_day(self) -> list[dict[str, Any]]:
        """Impressions and clicks per slot per exposure day (organic left out), for the CTR plot."""
        return [{"slot": s, "day": d, "impressions": n, "clicks": c}
                for s, d, n, _, c, *_ in sorted(self.group("slot", "day")) if s != ORGANIC and d != ORGANIC]

    def meta(self) -> dict[str, Any]:
        how = {ev: dict.fromkeys(HOW, 0) for ev in ATTRIBUTED_EVENTS}
        counts = self.con.execute("SELECT event, how, count(*) FROM attributed GROUP BY ALL").fetchall()
        for ev, h, n in counts:
            how[ev][h] = n
        slots = self.con.execute(
            "SELECT DISTINCT CASE WHEN x.slot = '' THEN ? ELSE x.slot END, f.slot IS NOT NULL "
            "FROM exposure x LEFT JOIN frontend_slots f ON x.slot = f.slot WHERE x.ts >= ? ORDER BY 1",
            [UNKNOWN, int(self.since)]).fetchall()
        imps, members = self.row("SELECT count(*), count(DISTINCT member_id) FROM counted")
        unpriced = self._one("SELECT count(*) FROM attributed a LEFT JOIN items p USING (item_id) "
                             "WHERE a.event = 'purchase' AND p.price IS NULL") if self.items else None
        return {
            "log": str(self.log_dir), "files": self.files, "items": str(self.items) if self.items else None,
            "since": _iso(self.since), "until": _iso(self.now),
            "click_window_s": self.click_window, "purchase_window_s": self.purchase_window,
            "impressions_from": {s: "frontend" if front else "served" for s, front in slots},
            "totals": {"impressions": imps, "members": members,
                       **{ev: sum(how[ev].values()) for ev in ATTRIBUTED_EVENTS}},
            "attribution": how,
            "revenue_computed": self.items is not None,
            "purchases_without_price": unpriced,
        }


def _row(by: str, key: str, imps: int, members: int, clicks: int, carts: int, purchases: int, units: int,
         revenue: float, unpriced: int, frontend: bool, served: bool) -> dict[str, Any]:
    ctr_ci, conv_ci = wilson(clicks, imps), wilson(purchases, imps)
    value: Any = int(key) if by == "position" and key.isdigit() else key
    return {
        by: value, "impressions": imps, "members": members, "clicks": clicks,
        "ctr": clicks / imps if imps else None, "ctr_ci": list(ctr_ci) if ctr_ci else None,
        "carts": carts, "purchases": purchases, "units": units,
        "conversion": purchases / imps if imps else None, "conversion_ci": list(conv_ci) if conv_ci else None,
        "revenue": round(float(revenue), 2), "purchases_without_price": unpriced,
        "impressions_from": ("mixed" if frontend and served else "frontend" if frontend
                             else "served" if served else None),
        "organic": key == ORGANIC,
    }


def _order(by: str, key: Any, impressions: int) -> tuple[int, int, str]:
    """Positions and days in order, other keys by impressions; unknown, then organic, last."""
    tail = 2 if key == ORGANIC else 1 if key == UNKNOWN else 0
    if by == "position":
        return tail, key if isinstance(key, int) else 0, ""
    if by == "day":
        return tail, 0, str(key)
    return tail, -impressions, str(key)


def build_report(log_dir: Path, *, since: str = "7d", by: str = "slot", items: Path | None = None,
                 click_window: str = "24h", purchase_window: str = "7d", now: float | None = None,
                 experiment: str | None = None, rules: Path | None = None) -> tuple[Report, Attribution]:
    """Parse the flags, read the log and group it: the CLI's whole computation."""
    if by not in REPORT_BY:
        raise ReportError(f"--by takes one of {', '.join(REPORT_BY)}, not {by!r}")
    if by != "arm" and (experiment is not None or rules is not None):
        raise ReportError("--experiment and --rules go with --by arm")
    now = time.time() if now is None else now
    att = Attribution(log_dir, parse_since(since, now), items=items,
                      click_window=parse_duration(click_window, "--click-window"),
                      purchase_window=parse_duration(purchase_window, "--purchase-window"), now=now)
    if by == "arm":
        from training.report_arms import arm_report

        return arm_report(att, experiment, rules), att
    return att.report(by), att


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
