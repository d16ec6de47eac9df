"""The Grafana dashboard kept in the repo (deploy/grafana/dashboards/mallrec.json) queries what the
service exposes: every series name, every label it filters or groups by, rate()/increase() only over
counters, against the registry of a serve app wired by ``service.app.build`` (the sink's metrics
included). A renamed metric or label fails here instead of showing an empty panel.
Not checked: that Grafana renders it (no Grafana here), PromQL beyond these names.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy._common import DEPLOY, PENDING_SERIES, Series, service_series

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "mallrec.json"
#: labels Prometheus adds to every scraped series
TARGET_LABELS = {"job", "instance"}
#: what the dashboard is for: each of these is queried by at least one panel
REQUIRED = {
    "mallrec_requests_total",  # request rate by method and slot
    "mallrec_request_seconds_bucket",  # latency by method and slot
    "mallrec_degraded_responses_total",
    "mallrec_state_store_errors_total",
    "mallrec_model_reload_failures_total",
    "mallrec_tracked_events_total",
    "mallrec_eventlog_backlog",
}
_SERIES = re.compile(r"\b(mallrec_[A-Za-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b(mallrec_[A-Za-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_RATE = re.compile(r"\b(?:rate|irate|increase)\s*\(\s*(mallrec_[A-Za-z0-9_]+)")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # a collapsed row keeps its panels inside
    return out


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every query: panel targets and query variables."""
    out = [(p["title"], t["expr"]) for p in all_panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((f"variable {var['name']}", q))
    return out


@pytest.fixture(scope="module")
def series() -> dict[str, Series]:
    known = dict(service_series())
    for name, kind in PENDING_SERIES.items():
        known.setdefault(name, Series(kind, None))
    return known


def test_dashboard_parses_and_has_queries(dashboard):
    assert dashboard["uid"] == "mallrec" and dashboard["title"]
    queries = exprs(dashboard)
    assert len(queries) >= 10
    for where, expr in queries:
        assert expr.strip(), where


def test_every_series_exists(dashboard, series):
    for where, expr in exprs(dashboard):
        for name in _SERIES.findall(expr):
            assert name in series, f"{where}: {name} is not exposed by the service (nor in PENDING_SERIES)"


def test_every_label_exists(dashboard, series):
    for where, expr in exprs(dashboard):
        in_expr = {n: series[n] for n in _SERIES.findall(expr) if n in series}
        for name, matchers in _SELECTOR.findall(expr):
            labels = series[name].labels
            if labels is None:
                continue
            for label in _MATCHER.findall(matchers):
                assert label in labels | TARGET_LABELS, \
                    f"{where}: {name} has no label {label!r} ({sorted(labels)})"
        known = [s.labels for s in in_expr.values()]
        if not known or any(lbl is None for lbl in known):
            continue
        union = set().union(*known) | TARGET_LABELS
        for group in _GROUPING.findall(expr):
            for label in (g.strip() for g in group.split(",") if g.strip()):
                assert label in union, f"{where}: groups by {label!r}, which none of {sorted(in_expr)} has"


def test_rates_only_over_counters(dashboard, series):
    for where, expr in exprs(dashboard):
        for name in _RATE.findall(expr):
            kind = series[name].kind
            assert kind == "counter", f"{where}: rate()/increase() over the {kind} {name}"


def test_the_dashboard_covers_what_it_is_for(dashboard):
    queried = {n for _, e in exprs(dashboard) for n in _SERIES.findall(e)}
    assert queried >= REQUIRED, f"not on the dashboard: {sorted(REQUIRED - queried)}"


def test_pending_series_are_still_pending():
    """An entry in PENDING_SERIES the service now has can go (the check above then covers it)."""
    landed = sorted(set(PENDING_SERIES) & set(service_series()))
    if landed:
        pytest.skip(f"landed, remove from PENDING_SERIES in tests/deploy/_common.py: {landed}")


def test_panels_use_the_datasource_variable_and_do_not_overlap(dashboard):
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    cells: dict[tuple[int, int], str] = {}
    for p in all_panels(dashboard):
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(ids) == len(set(ids))
