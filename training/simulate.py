"""`mallrec simulate`: simulated members drive the real server over gRPC through simulated days.

    day 0: synthetic history (training.synth) -> train -> DIR/models
    each day: members visit (check_in, search_box, delivery slots) -> Recommend -> hidden choice
              model (training.simulate_world) -> clicks and purchases -> TrackEvents (explicit ts)
    each night (--retrain nightly): the event log (DIR/log) + the history -> train -> publish ->
              the server hot-reloads it; the next day's responses carry the new model version

The server is the real one (``service.app.build``), in this process, with an injected clock (so days
pass in seconds), the embedded Redis and the event-log sink on. Counts come from what the simulator
saw; at the end they are checked against the event log the sink wrote.

It tests the system, never a model's accuracy: the members' tastes and choice model are our own
invention, tuned so that the loop has something to learn.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

from rich.console import Console

from service.app import App
from service.client import Client
from training.simulate_world import COUNT, Counts, DayInfo, Mall, SimulateError, World

DAY = 86_400
SLOTS = ("check_in", "search_box", "delivery")
HISTORY_DAYS = 30
EVENTS_PER_MEMBER = 25  # day-0 history size
RELOAD_INTERVAL = 0.2  # seconds between the server's checks of CURRENT
SINK_FLUSH = 1.0  # seconds the sink may hold records (its default, 5 s, would stall every night)
#: The frontend shares the server's process and event loop here, so the default 0.1 s Redis budget
#: would time reads out on the simulator's own load (answers then degrade, their items unlogged).
REDIS_TIMEOUT = 0.5
RELOAD_TIMEOUT = 120.0
NOT_A_BENCHMARK = ("a test of the system, not an accuracy claim: the members' tastes and their choice "
                   "model are invented, so these numbers say nothing about real members")


@dataclass(frozen=True)
class SimConfig:
    out: Path
    members: int = 2000
    days: int = 7
    retrain: str = "nightly"  # or "never"
    seed: int = 7
    rules: Path | None = None
    items: int = 0  # 0: members // 4, at least 100
    start: int = 0  # unix seconds of day 1's 00:00 UTC; 0: `days` days before today's 00:00 UTC

    def checked(self) -> SimConfig:
        """The config with its defaults filled in; SimulateError naming the flag when one is bad."""
        if self.members < 20:
            raise SimulateError(f"--members must be at least 20, got {self.members}")
        if not 1 <= self.days <= 365:
            raise SimulateError(f"--days must be from 1 to 365, got {self.days}")
        if self.retrain not in ("nightly", "never"):
            raise SimulateError(f"--retrain must be nightly or never, not {self.retrain!r}")
        if self.rules is not None and not self.rules.is_file():
            raise SimulateError(f"--rules {self.rules}: no such file")
        if self.out.exists() and not self.out.is_dir():
            raise SimulateError(f"--out {self.out} is a file, not a folder")
        used = [n for n in ("models", "log", "history", "summary.json") if (self.out / n).exists()]
        if used:
            raise SimulateError(f"--out {self.out} already holds a run ({', '.join(used)}); give a new "
                                f"folder (a second run would mix its log with this one's)")
        today = int(time.time()) // DAY * DAY
        return SimConfig(out=self.out, members=self.members, days=self.days, retrain=self.retrain,
                         seed=self.seed, rules=self.rules, items=self.items or max(100, self.members // 4),
                         start=self.start or today - self.days * DAY)


class SimClock:
    """The server's clock: the simulator moves it; the server reads it."""

    def __init__(self, now: float) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now


def train_models(events: list[Path], items: Path, members: Path, models: Path) -> tuple[str, int]:
    """What `mallrec train --events ... --items ... --members ... --out models` does, quietly: the
    published version and the number of events it learned from."""
    from service.model_bundle import read_manifest
    from training.config import load_config
    from training.events import load_dataset
    from training.pipeline import train
    from training.progress import Steps

    cfg = load_config(None)
    ds = load_dataset(events, items, members, max_bad_share=cfg.input.max_bad_share)
    path = train(ds, cfg, models, steps=Steps(quiet=True))
    return str(read_manifest(path)["version"]), len(ds.events)


async def wait_for_log(app: App) -> None:
    """Until the sink has written every record the stream holds (served items flushed first)."""
    import redis.asyncio as redis

    from service.eventlog import files
    from service.state.keys import log_stream_key

    await app.recommender.drain()
    assert app.embedded is not None and app.settings.log_dir is not None
    client = redis.from_url(app.embedded.url, decode_responses=True)
    try:
        last = await client.xrevrange(log_stream_key(app.settings.redis_prefix), count=1)
    finally:
        await client.aclose()
    end = files.newest_sid(last)
    deadline = time.monotonic() + 30
    while files.sid(files.read_checkpoint(app.settings.log_dir)) < end:
        if time.monotonic() > deadline:
            raise SimulateError(f"the event-log sink did not write the day's records to "
                                f"{app.settings.log_dir} within 30 s")
        await asyncio.sleep(0.05)


async def wait_for_model(app: App, version: str) -> float:
    """Seconds until the server serves ``version`` (its watcher polls CURRENT)."""
    began = time.monotonic()
    while app.model_version != version:
        if time.monotonic() - began > RELOAD_TIMEOUT:
            raise SimulateError(f"the server did not load model {version} within {RELOAD_TIMEOUT:.0f} s "
                                f"(still serving {app.model_version})")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


class _MallSize(TypedDict):
    """What `generate` and `hidden_tastes` share: the same mall."""

    members: int
    items: int
    seed: int
    days: int
    now: int


async def run(cfg: SimConfig, console: Console) -> dict[str, Any]:
    """The whole simulation; returns the summary (also written to ``DIR/summary.json``)."""
    import json

    from service.app import build
    from service.settings import Settings
    from training.synth import generate, hidden_tastes

    cfg = cfg.checked()
    if cfg.rules is not None:
        check_rules(cfg.rules)
    began = time.perf_counter()
    out = cfg.out
    history = out / "history"
    size: _MallSize = {"members": cfg.members, "items": cfg.items, "seed": cfg.seed, "days": HISTORY_DAYS,
                       "now": cfg.start}
    with console.status("day 0: generating the history"):
        files = generate(history, events=cfg.members * EVENTS_PER_MEMBER, **size)
        world = World(hidden_tastes(**size), cfg.seed)
    with console.status("day 0: training"):
        t0 = time.perf_counter()
        version, n_events = await asyncio.to_thread(train_models, [files["events"]], files["items"],
                                                    files["members"], out / "models")
    console.print(f"day 0: {cfg.members:,} members, {cfg.items:,} items, {n_events:,} history events; "
                  f"trained {version} in {time.perf_counter() - t0:.1f}s", highlight=False)
    clock = SimClock(cfg.start)
    settings = Settings.load({}, models_dir=out / "models", rules_path=cfg.rules, host="127.0.0.1", port=0,
                             log_dir=out / "log", reload_interval=RELOAD_INTERVAL, drain_seconds=0,
                             shutdown_grace=1, redis_timeout=REDIS_TIMEOUT, sink_flush_seconds=SINK_FLUSH)
    app = build(settings, clock=clock)
    mall = None
    try:
        await app.start()
        async with Client(app.target, timeout=30) as client:
            mall = Mall(world, client, clock)
            for day in range(1, cfg.days + 1):
                start = cfg.start + (day - 1) * DAY
                with console.status(f"day {day}") as status:
                    info = await mall.day(day, start, status.update)
                console.print(day_line(day, cfg.days, info, mall), highlight=False)
                if cfg.retrain == "nightly" and day < cfg.days:
                    clock.now = start + DAY
                    with console.status(f"night {day}: training on the history and the event log"):
                        info.retrain = await retrain(app, files, out)
                    console.print(f"  night {day}: trained {info.retrain['version']} on "
                                  f"{info.retrain['events']:,} events in {info.retrain['train_s']:.1f}s; "
                                  f"live after {info.retrain['reload_s']:.2f}s", highlight=False)
    finally:
        await app.stop(grace=0)  # drains: the log is complete when it returns
    result = summary(cfg, mall, time.perf_counter() - began)
    result["server"] = server_counters(app)
    result["log"] = check_log(out / "log", mall)
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def check_rules(path: Path) -> None:
    """The rules file's own checks (RulesError lists every problem) and the slots we ask for, before
    anything is trained or written."""
    from service.rules import load_rules

    registry = load_rules(path).registry
    missing = [s for s in SLOTS if registry.get(s) is None]
    if missing:
        raise SimulateError(f"--rules {path}: no slot {', '.join(missing)}; the simulator asks for "
                            f"{', '.join(SLOTS)}")


async def retrain(app: App, files: dict[str, Path], out: Path) -> dict[str, Any]:
    """The nightly job: history + event log -> a new bundle -> wait until the server serves it."""
    await wait_for_log(app)
    t0 = time.perf_counter()
    version, n_events = await asyncio.to_thread(train_models, [files["events"], out / "log"],
                                                files["items"], files["members"], out / "models")
    train_s = time.perf_counter() - t0
    reload_s = await wait_for_model(app, version)
    return {"version": version, "events": n_events, "train_s": round(train_s, 2),
            "reload_s": round(reload_s, 3)}


def day_line(day: int, days: int, info: DayInfo, mall: Mall) -> str:
    total = Counts()
    for (d, *_), c in mall.cells.items():
        if d == day:
            total.add(c)
    ctr = total.clicks / total.impressions if total.impressions else 0.0
    versions = ", ".join(mall.versions[day])
    return (f"day {day}/{days} {info.date}: {info.visits:,} visits, {info.requests:,} requests, "
            f"{total.impressions:,} items served, {total.clicks:,} clicks (CTR {ctr:.2%}), "
            f"{total.purchases:,} purchases after a click, model {versions} [{info.serve_seconds:.1f}s]")


def summary(cfg: SimConfig, mall: Mall | None, seconds: float) -> dict[str, Any]:
    """Counts per day, slot, arm and each cell; the config; the model versions each day served."""
    cells = mall.cells if mall is not None else {}

    def group(key: Any) -> dict[Any, Counts]:
        out: dict[Any, Counts] = defaultdict(Counts)
        for cell, c in sorted(cells.items()):
            out[key(cell)].add(c)
        return out

    total = Counts()
    for c in cells.values():
        total.add(c)
    days = mall.days if mall is not None else {}
    by_day = group(lambda c: c[0])
    return {
        "note": NOT_A_BENCHMARK,
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                   "slots": list(SLOTS), "count": COUNT, "history_days": HISTORY_DAYS,
                   "history_events": cfg.members * EVENTS_PER_MEMBER},
        "totals": total.as_dict(),
        "days": [{"day": d, **asdict(info), "model_versions": dict(mall.versions[d]) if mall else {},
                  **by_day[d].as_dict()} for d, info in sorted(days.items())],
        "slots": {s: c.as_dict() for s, c in group(lambda c: c[1]).items()},
        "arms": [{"experiment": e, "arm": a, **c.as_dict()}
                 for (e, a), c in group(lambda c: (c[2], c[3])).items()],
        "cells": [{"day": d, "slot": s, "experiment": e, "arm": a, **c.as_dict()}
                  for (d, s, e, a), c in sorted(cells.items())],
        "events_sent": dict(mall.sent) if mall is not None else {},
        "wall_seconds": round(seconds, 1),
    }


def check_log(log_dir: Path, mall: Mall | None) -> dict[str, Any]:
    """The event log's served, click and purchase records against what the simulator saw."""
    import pyarrow.compute as pc

    from service.eventlog.schema import read_log

    table = read_log(log_dir, columns=["event", "request_id"])
    counts = {k: int(v) for k, v in zip(*(c.to_pylist() for c in pc.value_counts(
        table.column("event")).flatten()), strict=True)} if table.num_rows else {}
    event, request = table.column("event"), table.column("request_id")
    served_requests = pc.unique(request.filter(pc.equal(event, "served")))
    clicks = request.filter(pc.equal(event, "click"))
    orphans = int(pc.sum(pc.invert(pc.is_in(clicks, value_set=served_requests))).as_py() or 0)
    served = sum(c.impressions for c in mall.cells.values()) if mall is not None else 0
    expected = {"served": served, **(dict(mall.sent) if mall is not None else {})}
    degraded = sum(d.degraded_items for d in mall.days.values()) if mall is not None else 0
    return {"records": counts, "expected": expected, "clicks_without_served_record": orphans,
            "served_in_degraded_responses": degraded,
            "complete": orphans == 0 and all(counts.get(k, 0) == v for k, v in expected.items())}


#: The server's own counters worth a look after a run (prometheus names, without ``_total``).
SERVER_COUNTERS = ("mallrec_degraded_responses", "mallrec_state_store_errors",
                   "mallrec_served_impressions_dropped", "mallrec_model_reload_failures",
                   "mallrec_shed_requests", "mallrec_eventlog_bad_records", "mallrec_eventlog_overruns")


def server_counters(app: App) -> dict[str, dict[str, float]]:
    """Those counters by label values ("" when unlabelled), from the server's registry."""
    found: dict[str, dict[str, float]] = {}
    for family in app.metrics.registry.collect():
        if family.name in SERVER_COUNTERS:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    found.setdefault(family.name, {})[key] = sample.value
    return found
