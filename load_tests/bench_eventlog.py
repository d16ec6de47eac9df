"""The event log's cost and limits, one command, three measurements:

    .venv/bin/python -m load_tests.bench_eventlog [--models MODELS_DIR] [--only throughput,sink,memory]

throughput  Closed-loop max RPS of ``Recommend`` (one slot) and ``TrackEvents`` (``--track-batch``
            events a call, every event with its own event_id, so dedup never short-circuits) against
            two ``mallrec serve`` processes started side by side, one with ``MALLREC_EVENT_LOG=true``,
            one with ``false``; the load alternates between them (on/off, then off/on, ...) for
            ``--rounds`` rounds. Reported: median RPS of each, the ratio on/off (target >= 0.8),
            server CPU ms per request, and the records each request added to the stream.
sink        ``mallrec sink`` as a subprocess while the stream is fed directly (XADD of
            ``schema.encode(LogRecord(...))``, in one EVALSHA per tick like the server) at a steady
            ``--sink-rate`` for ``--sink-seconds``; every second: the backlog (XINFO GROUPS lag +
            pending, and the sink's own ``mallrec_eventlog_backlog``), the age of the newest written
            record (its stream id against now) and of the oldest not yet written, the sink's CPU.
            Then the sink is stopped, ``--backlog`` records are appended, a sink is started again and
            the time to drain them gives its maximum rate.
memory      A private redis-server, no sink: ``--memory-factor`` x ``--memory-maxlen`` records appended
            with ``XADD MAXLEN ~``, ``used_memory`` and XLEN sampled as they go (they must plateau);
            then a sink is started, catches up, and the memory is read again.

Each measurement runs on its own private redis-server on a free port (tests/fixtures/redis_server.py),
so the figures are not polluted by other users of the machine's Redis. Servers, sinks and Redis
servers are stopped at the end whatever happens. The JSON goes to
``load_tests/results/bench_eventlog-<time>.json``, process logs to ``load_tests/results/logs/``.
Without ``--models`` a small mall is made and trained once into ``load_tests/results/eventlog-mall``
(20k members, 5k items, 300k events; ~30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ALL = ("throughput", "sink", "memory")

#: Appends records like the server does (``_TRACK`` / ``_COUNT_SERVED``): XADD MAXLEN ~ per record,
#: one EVALSHA per batch. KEYS[1] stream; ARGV[1] maxlen, ARGV[2..] encoded records.
_APPEND = """
local maxlen = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'r', ARGV[i]) end
return #ARGV - 1
"""


# --------------------------------------------------------------------------- helpers


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def stats(values: list[float], nd: int = 3) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(pct(values, 50), nd), "p99": round(pct(values, 99), nd),
            "max": round(max(values), nd), "mean": round(statistics.fmean(values), nd)}


def stream_ms(stream_id: str | None) -> int | None:
    return int(stream_id.partition("-")[0]) if stream_id and stream_id != "0-0" else None


class Procs:
    """Processes this run started (servers, sinks, Redis): stopped at the end whatever happens."""

    def __init__(self) -> None:
        self.stoppers: list = []

    def add(self, stop) -> None:  # type: ignore[no-untyped-def]
        self.stoppers.append(stop)

    def stop_all(self) -> None:
        while self.stoppers:
            try:
                self.stoppers.pop()()
            except Exception as e:  # keep stopping the others
                print(f"   (stopping: {type(e).__name__}: {e})", flush=True)


def private_redis(procs: Procs):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.redis_server import RedisProcess

    rp = RedisProcess().start()
    procs.add(lambda: rp.__exit__(None, None, None))
    return rp


def redis_info(client) -> dict:  # type: ignore[no-untyped-def]
    info = client.info("memory")
    return {"used_memory_mib": round(info["used_memory"] / 2**20, 2),
            "used_memory_rss_mib": round(info["used_memory_rss"] / 2**20, 2),
            "fragmentation": info.get("mem_fragmentation_ratio")}


# --------------------------------------------------------------------------- records


class RecordMaker:
    """Encoded event-log records shaped like the service's: ~85% served items (slot, position, source,
    model and rules versions, sometimes a rule), the rest TrackEvents behaviour; unique event ids."""

    def __init__(self, members: list[str], items: list[str], seed: int = 0, pool: int = 5000) -> None:
        from service.eventlog.schema import LogRecord, encode

        rng = np.random.default_rng(seed)
        ts = int(time.time())
        self.tails: list[str] = []
        self.served: list[bool] = []
        sources = ("als", "popular", "co_view", "recent", "new_arrivals")
        kinds = ("view", "click", "fav", "cart", "purchase", "impression")
        for _ in range(pool):
            member, item = str(rng.choice(members)), str(rng.choice(items))
            if rng.random() < 0.85:
                rec = LogRecord("", member, item, "served", ts, 1, str(rng.choice(["check_in", "search_box",
                                                                                    "delivery"])),
                                int(rng.integers(0, 10)), uuid.UUID(int=int(rng.integers(1 << 62))).hex[:16],
                                str(rng.choice(sources)), "20261203T092222.652Z-e6bb6f", "builtin-7c1e2a",
                                rules=("boost_new",) if rng.random() < 0.2 else ())
                self.served.append(True)
            else:
                rec = LogRecord("", member, item, str(rng.choice(kinds, p=[.7, .12, .03, .06, .03, .06])),
                                ts, 1, "check_in")
                self.served.append(False)
            enc = encode(rec)
            assert enc.startswith("v1\x1f\x1f")
            self.tails.append(enc[3:])
        self.tag = uuid.uuid4().hex[:12]
        self.n = 0

    def mean_chars(self) -> float:
        return round(statistics.fmean(len(t) for t in self.tails) + 3 + len(self.tag) + 8, 1)

    def take(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            k = self.n
            self.n += 1
            i = k % len(self.tails)
            prefix = f"s-{self.tag}-{k:x}-0" if self.served[i] else f"e-{self.tag}-{k:x}"
            out.append("v1\x1f" + prefix + self.tails[i])
        return out


class Appender:
    """XADD MAXLEN ~ of records, ``chunk`` per EVALSHA (as the server's scripts do)."""

    def __init__(self, client, key: str, maxlen: int, chunk: int = 1000) -> None:  # type: ignore[no-untyped-def]
        self.client, self.key, self.maxlen, self.chunk = client, key, maxlen, chunk
        self.script = client.register_script(_APPEND)

    def add(self, records: list[str]) -> None:
        for k in range(0, len(records), self.chunk):
            self.script(keys=[self.key], args=[self.maxlen, *records[k:k + self.chunk]])


# --------------------------------------------------------------------------- the sink as a process


class SinkProc:
    def __init__(self, url: str, prefix: str, log_dir: Path, logfile: Path, procs: Procs,
                 batch: int | None, flush_seconds: float | None) -> None:
        from load_tests.run import free_port

        self.metrics_port = free_port()
        self.log_dir = log_dir
        cmd = [PY, "-m", "service.cli", "sink", "--log", str(log_dir), "--redis-url", url, "--prefix", prefix,
               "--metrics-port", str(self.metrics_port), "--lock-seconds", "2"]
        if batch:
            cmd += ["--batch", str(batch)]
        if flush_seconds:
            cmd += ["--flush-seconds", str(flush_seconds)]
        self.logfile = logfile
        self.t_launch = time.monotonic()
        with open(logfile, "ab") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env=os.environ.copy())
        procs.add(self.stop)
        import psutil

        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 60
        while "event-log sink started" not in logfile.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sink did not start:\n{logfile.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        self.started_s = time.monotonic() - self.t_launch

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def rss_mib(self) -> float:
        return round(self.ps.memory_info().rss / 2**20, 1)

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("mallrec_eventlog_"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def checkpoint(self) -> str:
        from service.eventlog import files

        return files.read_checkpoint(self.log_dir)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def group_state(client, key: str) -> dict:  # type: ignore[no-untyped-def]
    """The stream and the sink group: entries not yet acknowledged (lag + pending), ids."""
    stream = client.xinfo_stream(key)
    groups = client.xinfo_groups(key)
    g = next((x for x in groups if x["name"] == "sink"), None)
    out = {"xlen": stream["length"], "entries_added": stream.get("entries-added"),
           "last_id": stream["last-generated-id"]}
    if g is None:
        out.update(lag=None, pending=None, last_delivered=None, backlog=stream["length"])
    else:
        lag = g.get("lag")
        out.update(lag=lag, pending=g["pending"], last_delivered=g["last-delivered-id"],
                   backlog=(lag if lag is not None else stream["length"]) + g["pending"])
    out["caught_up"] = (g is not None and g["pending"] == 0
                        and g["last-delivered-id"] == stream["last-generated-id"])
    return out


def sample_sink(client, key: str, sink: SinkProc, t0: float) -> dict:  # type: ignore[no-untyped-def]
    now_ms = time.time() * 1000
    g = group_state(client, key)
    cp = sink.checkpoint()
    newest = stream_ms(cp)
    oldest_unwritten = client.xrange(key, min=f"({cp}" if cp != "0-0" else "-", count=1)
    old_ms = stream_ms(oldest_unwritten[0][0]) if oldest_unwritten else None
    try:
        m = sink.metrics()
    except OSError:
        m = {}
    return {"t_s": round(time.monotonic() - t0, 3), "backlog": g["backlog"], "lag": g["lag"],
            "pending": g["pending"], "xlen": g["xlen"], "entries_added": g["entries_added"],
            "checkpoint": cp,
            "newest_written_age_s": round((now_ms - newest) / 1000, 3) if newest else None,
            "oldest_unwritten_age_s": round((now_ms - old_ms) / 1000, 3) if old_ms else 0.0,
            "sink_backlog_metric": m.get("mallrec_eventlog_backlog"),
            "sink_written_total": m.get("mallrec_eventlog_records_written_total"),
            "sink_overruns_total": m.get("mallrec_eventlog_overruns_total"),
            "sink_cpu_s": round(sink.cpu_s(), 3), "caught_up": g["caught_up"]}


def wait_caught_up(client, key: str, sink: SinkProc, t0: float, timeout: float,  # type: ignore[no-untyped-def]
                   interval: float = 0.25) -> tuple[list[dict], bool]:
    """Sample until the sink has written and acknowledged everything in the stream."""
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = sample_sink(client, key, sink, t0)
        samples.append(s)
        if s["caught_up"] and s["checkpoint"] == client.xinfo_stream(key)["last-generated-id"]:
            return samples, True
        if sink.proc.poll() is not None:
            raise RuntimeError(f"sink exited:\n{sink.logfile.read_text(errors='replace')[-3000:]}")
        time.sleep(interval)
    return samples, False


# --------------------------------------------------------------------------- throughput: the client


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def track_body(base: list[bytes], tag: str, k: int, batch: int) -> bytes:
    """A serialised TrackEventsRequest of ``batch`` events, each ``base`` event (serialised Event
    without an id) plus a unique ``event_id`` (field 7), appended as raw protobuf fields."""
    parts = []
    n = len(base)
    for j in range(batch):
        eid = f"{tag}-{k:x}-{j}".encode()
        ev = base[(k * batch + j) % n] + b"\x3a" + _varint(len(eid)) + eid
        parts.append(b"\x0a" + _varint(len(ev)) + ev)
    return b"".join(parts)


async def _closed_loop(plan: dict) -> dict:
    import grpc

    from service.api.gen.mallrec.v1 import recommender_pb2 as pb

    opts = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(plan["target"], options=opts + [("bench.channel", i)])
                for i in range(plan["channels"])]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 10)
    fns = [ch.unary_unary(plan["path"], request_serializer=None, response_deserializer=None)
           for ch in channels]
    kind, pool, batch, tag = plan["kind"], plan["pool"], plan["batch"], plan["tag"]
    start = max(plan["start_at"], time.monotonic())
    record_from = start + plan["warmup"]
    stop_at = record_from + plan["duration"]
    lat: list[float] = []
    errors: dict[str, int] = {}
    sample: list[str] = []
    new = dup = 0
    counter = 0
    last_done = record_from
    await asyncio.sleep(start - time.monotonic())
    cpu0 = time.process_time()

    async def worker() -> None:
        nonlocal counter, new, dup, last_done
        while time.monotonic() < stop_at:
            k = counter
            counter += 1
            body = track_body(pool, tag, k, batch) if kind == "track" else pool[k % len(pool)]
            t = time.monotonic()
            try:
                raw = await fns[k % len(fns)](body, timeout=plan["timeout"])
            except grpc.aio.AioRpcError as e:
                if t >= record_from:
                    errors[e.code().name] = errors.get(e.code().name, 0) + 1
                    if len(sample) < 5:
                        sample.append(f"{e.code().name}: {e.details()}")
                continue
            done = time.monotonic()
            if t >= record_from:
                lat.append(done - t)
                last_done = max(last_done, done)
                if kind == "track":
                    resp = pb.TrackEventsResponse.FromString(raw)
                    new += resp.new_events
                    dup += resp.duplicates

    await asyncio.gather(*(worker() for _ in range(plan["concurrency"])))
    cpu = time.process_time() - cpu0
    for ch in channels:
        await ch.close()
    return {"record_from": record_from, "last_done": last_done, "latency": lat, "errors": errors,
            "errors_sample": sample, "new_events": new, "duplicates": dup, "client_cpu_s": cpu,
            "sent": counter}


def _client_main(plan: dict, conn) -> None:  # type: ignore[no-untyped-def]
    try:
        conn.send(("ok", asyncio.run(_closed_loop(plan))))
    except BaseException as e:  # report, never hang the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def track_base(members: np.ndarray, items: np.ndarray, n: int, seed: int) -> list[bytes]:
    """``n`` serialised Events (no id) like a frontend's: mostly views, some clicks, carts, ..."""
    from load_tests.loadgen import TRACK_EVENTS, TRACK_P
    from service.api.gen.mallrec.v1 import recommender_pb2 as pb

    rng = np.random.default_rng(seed)
    m = members[rng.integers(0, len(members), n)]
    it = items[rng.integers(0, len(items), n)]
    ev = rng.choice(len(TRACK_EVENTS), n, p=TRACK_P)
    return [pb.Event(member_id=str(a), item_id=str(b), event=TRACK_EVENTS[e],
                     slot="check_in").SerializeToString() for a, b, e in zip(m, it, ev, strict=True)]


def drive(target: str, pids: list[int], kind: str, pool: list[bytes], args: argparse.Namespace) -> dict:
    """One closed-loop phase in a client process of its own; server CPU from psutil."""
    from load_tests.loadgen import SERVICE, ProcMonitor

    path = SERVICE + ("TrackEvents" if kind == "track" else "Recommend")
    plan = {"target": target, "path": path, "kind": kind, "pool": pool, "batch": args.track_batch,
            "tag": uuid.uuid4().hex[:10], "start_at": time.monotonic() + 2.0, "warmup": args.warmup,
            "duration": args.duration, "concurrency": args.concurrency, "channels": args.channels,
            "timeout": 2.0}
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_client_main, args=(plan, child), daemon=True)
    with ProcMonitor(pids) as mon:
        proc.start()
        child.close()
        if not parent.poll(args.duration + args.warmup + 90):
            proc.kill()
            raise RuntimeError("the client process did not report in time")
        status, res = parent.recv()
        proc.join(10)
    if status != "ok":
        raise RuntimeError(f"client failed: {res}")
    wall = max(res["last_done"] - res["record_from"], 1e-9)
    ok = len(res["latency"])
    srv = mon.window(res["record_from"], res["last_done"])
    lat = np.array(res["latency"]) * 1000
    out = {"rps": round(ok / wall, 1), "requests_ok": ok, "measured_s": round(wall, 2),
           "errors": res["errors"], "errors_sample": res["errors_sample"],
           "p50_ms": round(float(np.percentile(lat, 50)), 2) if ok else None,
           "p99_ms": round(float(np.percentile(lat, 99)), 2) if ok else None,
           "server_cpu_cores": srv["cpu_cores"],
           "server_cpu_ms_per_request": round(1000 * srv["cpu_s"] / ok, 3) if ok else None,
           "server_rss_mib": srv["rss_mib_max"],
           "client_cpu_cores": round(res["client_cpu_s"] / wall, 3), "requests_sent": res["sent"],
           "loadavg_1m": round(os.getloadavg()[0], 2)}
    if kind == "track":
        out["new_events"], out["duplicates"] = res["new_events"], res["duplicates"]
    return out


# --------------------------------------------------------------------------- the measurements


def measure_throughput(args: argparse.Namespace, procs: Procs, logdir: Path, stamp: str) -> dict:
    import redis

    from load_tests.loadgen import Population, Workload, build_requests
    from load_tests.run import Servers, free_port
    from service.state.keys import log_stream_key

    rp = private_redis(procs)
    client = redis.Redis.from_url(rp.url, decode_responses=True)
    models = args.models.resolve()
    pop = Population.from_models(models)
    servers: dict[str, Servers] = {}
    prefixes = {"on": "bench-on:", "off": "bench-off:"}
    for mode in ("on", "off"):
        port = free_port()
        env = {"MALLREC_REDIS_PREFIX": prefixes[mode], "MALLREC_LOG_LEVEL": "info",
               "MALLREC_EVENT_LOG": "true" if mode == "on" else "false",
               "MALLREC_LOG_MAXLEN": str(args.throughput_maxlen)}
        s = Servers(f"{stamp}-mallrec-log-{mode}", [PY, "-m", "service.cli", "serve", "--models", str(models),
                                                  "--port", str(port), "--host", "127.0.0.1",
                                                  "--redis-url", rp.url], port, 1, env, "mallrec serving",
                    logdir)
        procs.add(s.stop)
        servers[mode] = s
        print(f"   server log {mode}: {s.target} (pid {s.pids[0]}, started in {s.started_s:.1f} s)",
              flush=True)
    pools = {"recommend": [body for _, _, body in build_requests(
        pop, Workload({f"recommend:{args.slot}": 1.0}), 20_000, seed=1)],
        "track": track_base(pop.members, pop.items, 20_000, seed=2)}
    rounds: list[dict] = []
    for r in range(args.rounds):
        order = ("on", "off") if r % 2 == 0 else ("off", "on")
        for kind in ("recommend", "track"):
            for mode in order:
                before = {m: client.xinfo_stream(log_stream_key(prefixes[m])).get("entries-added", 0)
                          if client.exists(log_stream_key(prefixes[m])) else 0 for m in ("on", "off")}
                s = servers[mode]
                print(f"-- round {r + 1} {kind} log {mode}: {args.duration:g}+{args.warmup:g} s "
                      f"(load avg {os.getloadavg()[0]:.2f}) ...", flush=True)
                res = drive(s.target, s.pids, kind, pools[kind], args)
                time.sleep(0.1)  # the served items' write-behind flush
                after = {m: client.xinfo_stream(log_stream_key(prefixes[m])).get("entries-added", 0)
                         if client.exists(log_stream_key(prefixes[m])) else 0 for m in ("on", "off")}
                added = after[mode] - before[mode]
                # every request sent, the warm-up's too, appended its records
                res.update(round=r + 1, op=kind, log=mode, stream_records_added=added,
                           records_per_request=round(added / max(1, res["requests_sent"]), 2))
                rounds.append(res)
                print(f"   {res['rps']} RPS, p50 {res['p50_ms']} p99 {res['p99_ms']} ms, errors "
                      f"{res['errors']}, server {res['server_cpu_cores']} cores "
                      f"{res['server_cpu_ms_per_request']} ms/req, client {res['client_cpu_cores']} cores, "
                      f"records/req {res['records_per_request']}"
                      + (f", new {res['new_events']} dup {res['duplicates']}" if kind == "track" else ""),
                      flush=True)
    summary = {}
    for kind in ("recommend", "track"):
        row: dict = {}
        for mode in ("on", "off"):
            rs = [x for x in rounds if x["op"] == kind and x["log"] == mode]
            row[f"rps_{mode}"] = [x["rps"] for x in rs]
            row[f"rps_{mode}_median"] = round(statistics.median(row[f"rps_{mode}"]), 1)
            row[f"cpu_ms_per_req_{mode}_median"] = round(statistics.median(
                x["server_cpu_ms_per_request"] for x in rs), 3)
            row[f"p99_ms_{mode}_median"] = round(statistics.median(x["p99_ms"] for x in rs), 2)
            row[f"records_per_request_{mode}"] = round(statistics.median(
                x["records_per_request"] for x in rs), 2)
            row[f"errors_{mode}"] = sum(sum(x["errors"].values()) for x in rs)
        row["ratio_on_off"] = round(row["rps_on_median"] / row["rps_off_median"], 3)
        pairs = [(a["rps"], b["rps"]) for a in rounds for b in rounds
                 if a["op"] == b["op"] == kind and a["round"] == b["round"]
                 and a["log"] == "on" and b["log"] == "off"]
        row["ratio_per_round"] = [round(a / b, 3) for a, b in pairs]
        row["ratio_per_round_median"] = round(statistics.median(row["ratio_per_round"]), 3)
        row["cpu_ratio_off_on"] = round(row["cpu_ms_per_req_off_median"] / row["cpu_ms_per_req_on_median"], 3)
        row["target_met"] = row["ratio_on_off"] >= 0.8
        summary[kind] = row
    stream = client.xinfo_stream(log_stream_key(prefixes["on"]))
    mem = redis_info(client)
    client.close()
    return {"config": {"slot": args.slot, "track_batch": args.track_batch, "rounds": args.rounds,
                       "duration_s": args.duration, "warmup_s": args.warmup, "concurrency": args.concurrency,
                       "channels": args.channels, "log_maxlen_on": args.throughput_maxlen,
                       "models": str(models), "members": len(pop.members), "items": len(pop.items)},
            "summary": summary, "rounds": rounds,
            "stream_on_at_end": {"xlen": stream["length"], "entries_added": stream.get("entries-added")},
            "redis_memory_at_end": mem}


def measure_sink(args: argparse.Namespace, procs: Procs, logdir: Path, stamp: str, members, items) -> dict:  # type: ignore[no-untyped-def]
    import redis

    from service.eventlog.schema import read_log
    from service.state.keys import log_stream_key

    rp = private_redis(procs)
    prefix = "bench-sink:"
    key = log_stream_key(prefix)
    client = redis.Redis.from_url(rp.url, decode_responses=True)
    work = Path(tempfile.mkdtemp(prefix="bench-eventlog-sink-"))
    procs.add(lambda: None if args.keep_log else shutil.rmtree(work, ignore_errors=True))
    log_dir = work / "log"
    maker = RecordMaker(list(members[:5000]), list(items[:5000]), seed=3)
    app = Appender(client, key, args.sink_maxlen)
    sink_log = logdir / f"{stamp}-sink.log"

    # steady feed
    print(f"-- sink: steady {args.sink_rate:g} records/s for {args.sink_seconds:g} s ...", flush=True)
    sink = SinkProc(rp.url, prefix, log_dir, sink_log, procs, args.sink_batch, args.sink_flush_seconds)
    t0 = time.monotonic()
    tick = 0.01
    fed = 0
    samples: list[dict] = []
    cpu_marks: list[tuple[float, float]] = [(time.monotonic(), sink.cpu_s())]
    next_sample = t0 + args.sample_interval
    late_ticks = 0
    while True:
        now = time.monotonic()
        if now - t0 >= args.sink_seconds:
            break
        due = int(args.sink_rate * (now - t0)) - fed
        if due > 0:
            app.add(maker.take(due))
            fed += due
            if due > args.sink_rate * tick * 5:
                late_ticks += 1
        if now >= next_sample:
            samples.append(sample_sink(client, key, sink, t0))
            cpu_marks.append((time.monotonic(), sink.cpu_s()))
            next_sample += args.sample_interval
        time.sleep(max(0.0, tick - (time.monotonic() - now)))
    feed_s = time.monotonic() - t0
    feed_cpu_end = sink.cpu_s()
    tail, caught = wait_caught_up(client, key, sink, t0, timeout=60)
    settle_s = tail[-1]["t_s"] - feed_s
    # skip the first seconds (the first batch has not been written yet): steady state only
    steady = [s for s in samples if s["t_s"] >= args.sink_skip]
    written = [s["sink_written_total"] for s in steady if s["sink_written_total"] is not None]
    span = steady[-1]["t_s"] - steady[0]["t_s"] if len(steady) > 1 else 0
    per_sec_cpu = [100 * (b[1] - a[1]) / (b[0] - a[0])
                   for a, b in zip(cpu_marks, cpu_marks[1:], strict=False)]
    steady_res = {
        "rate_target": args.sink_rate, "seconds": round(feed_s, 2), "records_fed": fed,
        "fed_per_s": round(fed / feed_s, 1), "feeder_late_ticks": late_ticks,
        "sink_start_s": round(sink.started_s, 2),
        "written_per_s": round((written[-1] - written[0]) / span, 1) if len(written) > 1 and span else None,
        "lag_records": stats([s["backlog"] for s in steady], 0),
        "lag_records_sink_metric": stats([s["sink_backlog_metric"] for s in steady
                                          if s["sink_backlog_metric"] is not None], 0),
        "newest_written_age_s": stats([s["newest_written_age_s"] for s in steady
                                       if s["newest_written_age_s"] is not None]),
        "oldest_unwritten_age_s": stats([s["oldest_unwritten_age_s"] for s in steady]),
        "sink_cpu_percent": round(100 * (feed_cpu_end - cpu_marks[0][1])
                                  / (cpu_marks[-1][0] - cpu_marks[0][0]), 1),
        "sink_cpu_percent_per_second": stats(per_sec_cpu[1:], 1),
        "sink_cpu_us_per_record": round(1e6 * (feed_cpu_end - cpu_marks[0][1]) / max(1, fed), 1),
        "sink_rss_mib": sink.rss_mib(),
        "caught_up_after_feed_s": round(settle_s, 2) if caught else None,
        "skipped_first_s": args.sink_skip,
        "samples": samples,
    }
    print(f"   fed {steady_res['fed_per_s']}/s, written {steady_res['written_per_s']}/s, lag records "
          f"{steady_res['lag_records']}, newest written age s {steady_res['newest_written_age_s']}, "
          f"sink CPU {steady_res['sink_cpu_percent']}%", flush=True)
    sink.stop()

    # max rate: a backlog drained
    print(f"-- sink: draining a backlog of {args.backlog:,} records ...", flush=True)
    t = time.monotonic()
    for k in range(0, args.backlog, 50_000):
        app.add(maker.take(min(50_000, args.backlog - k)))
    fill_s = time.monotonic() - t
    g0 = group_state(client, key)
    sink2 = SinkProc(rp.url, prefix, log_dir, sink_log, procs, args.sink_batch, args.sink_flush_seconds)
    t1 = time.monotonic()
    cpu1 = sink2.cpu_s()
    drain, caught = wait_caught_up(client, key, sink2, t1, timeout=args.drain_timeout, interval=0.25)
    t_end = drain[-1]["t_s"]
    cpu_end = sink2.cpu_s()
    first_commit = next((s for s in drain if s["backlog"] < g0["backlog"]), None)
    written_total = drain[-1]["sink_written_total"] or 0
    drain_res = {
        "backlog": g0["backlog"], "fill_s": round(fill_s, 2), "sink_start_s": round(sink2.started_s, 2),
        "drained": caught, "drain_s": round(t_end, 2),
        "records_per_s": round(g0["backlog"] / t_end, 1) if caught and t_end else None,
        "records_per_s_after_first_batch": round(first_commit["backlog"] / (t_end - first_commit["t_s"]), 1)
        if caught and first_commit and t_end > first_commit["t_s"] else None,
        "first_batch_written_s": first_commit["t_s"] if first_commit else None,
        "sink_cpu_percent": round(100 * (cpu_end - cpu1) / max(t_end, 1e-9), 1),
        "sink_cpu_us_per_record": round(1e6 * (cpu_end - cpu1) / max(1, g0["backlog"]), 1),
        "sink_rss_mib": sink2.rss_mib(), "written_total_metric": written_total,
        "samples": drain[:: max(1, len(drain) // 200)],
    }
    print(f"   drained {drain_res['backlog']:,} in {drain_res['drain_s']} s: {drain_res['records_per_s']} "
          f"records/s ({drain_res['records_per_s_after_first_batch']}/s after the first batch at "
          f"{drain_res['first_batch_written_s']} s), sink CPU {drain_res['sink_cpu_percent']}%", flush=True)
    sink2.stop()
    table = read_log(log_dir, columns=["event_id"])
    ids = table.column("event_id")
    files_n = sum(1 for _ in log_dir.glob("date=*/part-*.parquet"))
    check = {"records_appended": maker.n, "rows_in_parquet": table.num_rows,
             "distinct_event_ids": len(set(ids.to_pylist())), "parquet_files": files_n,
             "log_dir_mib": round(sum(f.stat().st_size for f in log_dir.rglob("*") if f.is_file()) / 2**20,
                                  2),
             "log_dir": str(log_dir) if args.keep_log else "(removed; --keep-log keeps it)"}
    print(f"   check: {check}", flush=True)
    client.close()
    return {"config": {"sink_batch": args.sink_batch or "default (10000)",
                       "sink_flush_seconds": args.sink_flush_seconds or "default (5)",
                       "stream_maxlen": args.sink_maxlen, "sample_interval_s": args.sample_interval,
                       "append_chunk_per_evalsha": "per 10 ms tick"},
            "steady": steady_res, "drain": drain_res, "check": check}


def measure_memory(args: argparse.Namespace, procs: Procs, logdir: Path, stamp: str, members, items) -> dict:  # type: ignore[no-untyped-def]
    import redis

    from service.state.keys import log_stream_key

    rp = private_redis(procs)
    prefix = "bench-mem:"
    key = log_stream_key(prefix)
    client = redis.Redis.from_url(rp.url, decode_responses=True)
    work = Path(tempfile.mkdtemp(prefix="bench-eventlog-mem-"))
    procs.add(lambda: shutil.rmtree(work, ignore_errors=True))
    maker = RecordMaker(list(members[:5000]), list(items[:5000]), seed=4)
    app = Appender(client, key, args.memory_maxlen)
    total = args.memory_factor * args.memory_maxlen
    step = max(1000, total // 30)
    print(f"-- memory: {total:,} records, MAXLEN ~ {args.memory_maxlen:,}, no sink ...", flush=True)
    base = redis_info(client)
    timeline = [{"appended": 0, "xlen": 0, **base, "t_s": 0.0}]
    t0 = time.monotonic()
    appended = 0
    while appended < total:
        n = min(step, total - appended)
        app.add(maker.take(n))
        appended += n
        timeline.append({"appended": appended, "xlen": client.xlen(key), **redis_info(client),
                         "t_s": round(time.monotonic() - t0, 2)})
    append_s = time.monotonic() - t0
    capped = [p for p in timeline if p["appended"] >= args.memory_maxlen * 1.05]
    mem_capped = [p["used_memory_mib"] for p in capped]
    at_cap = next(p for p in timeline if p["appended"] >= args.memory_maxlen)
    plateau = {"used_memory_mib_at_cap": at_cap["used_memory_mib"],
               "used_memory_mib_min_after_cap": min(mem_capped),
               "used_memory_mib_max_after_cap": max(mem_capped),
               "used_memory_mib_end": timeline[-1]["used_memory_mib"],
               "growth_after_cap_percent": round(
                   100 * (timeline[-1]["used_memory_mib"] / at_cap["used_memory_mib"] - 1), 1),
               "xlen_after_cap": [min(p["xlen"] for p in capped), max(p["xlen"] for p in capped)],
               "stream_memory_usage_mib": round((client.memory_usage(key) or 0) / 2**20, 2),
               "bytes_per_entry": round((timeline[-1]["used_memory_mib"] - base["used_memory_mib"]) * 2**20
                                        / max(1, timeline[-1]["xlen"]), 1),
               "mean_record_chars": maker.mean_chars()}
    plateau["projected_mib_at_1m_entries"] = round(plateau["bytes_per_entry"] * 1_000_000 / 2**20, 1)
    plateau["plateaued"] = (plateau["used_memory_mib_max_after_cap"]
                            <= 1.1 * plateau["used_memory_mib_min_after_cap"])
    print(f"   appended in {append_s:.1f} s; {plateau}", flush=True)
    print("-- memory: starting a sink, waiting for it to catch up ...", flush=True)
    sink = SinkProc(rp.url, prefix, work / "log", logdir / f"{stamp}-sink-memory.log", procs, args.sink_batch,
                    args.sink_flush_seconds)
    t1 = time.monotonic()
    samples, caught = wait_caught_up(client, key, sink, t1, timeout=args.drain_timeout, interval=0.5)
    during = []
    for s in samples[:: max(1, len(samples) // 40)]:
        during.append({"t_s": s["t_s"], "backlog": s["backlog"], "pending": s["pending"], "xlen": s["xlen"]})
    mem_after = redis_info(client)
    g = group_state(client, key)
    m = sink.metrics()
    sink.stop()
    time.sleep(0.5)
    after = {"caught_up": caught, "catch_up_s": round(samples[-1]["t_s"], 2), **mem_after, "xlen": g["xlen"],
             "pending": g["pending"], "lag": g["lag"],
             "records_written": m.get("mallrec_eventlog_records_written_total"),
             "overruns_reported": m.get("mallrec_eventlog_overruns_total"),
             "stream_memory_usage_mib": round((client.memory_usage(key) or 0) / 2**20, 2),
             "used_memory_mib_after_sink_stopped": redis_info(client)["used_memory_mib"],
             "during": during}
    print(f"   after the sink caught up: used_memory {after['used_memory_mib']} MiB, XLEN {after['xlen']:,}, "
          f"pending {after['pending']}, written {after['records_written']}, overruns "
          f"{after['overruns_reported']}", flush=True)
    sink_log = (logdir / f"{stamp}-sink-memory.log").read_text(errors="replace")
    after["sink_log_errors"] = [json.loads(x).get("msg") for x in sink_log.splitlines()
                                if '"level": "error"' in x][:5]
    client.close()
    return {"config": {"maxlen": args.memory_maxlen, "records": total, "baseline": base},
            "append_s": round(append_s, 2), "plateau": plateau, "timeline": timeline, "after_sink": after}


# --------------------------------------------------------------------------- report


def print_tables(result: dict) -> None:
    t = result.get("throughput")
    if t:
        c = t["config"]
        print(f"\n## Throughput, log on vs off (closed loop, {c['concurrency']} in flight, {c['rounds']} "
              f"rounds of {c['duration_s']:g} s, medians)\n")
        print("| op | RPS on | RPS off | on/off | on/off per round (median) | server CPU ms/req on | off | "
              "p99 ms on | off | records/req on | errors | >= 0.8x |")
        print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
        for kind, label in (("recommend", f"Recommend {c['slot']}"),
                            ("track", f"TrackEvents x{c['track_batch']}")):
            r = t["summary"][kind]
            print(f"| {label} | {r['rps_on_median']} | {r['rps_off_median']} | {r['ratio_on_off']} | "
                  f"{', '.join(map(str, r['ratio_per_round']))} ({r['ratio_per_round_median']}) | "
                  f"{r['cpu_ms_per_req_on_median']} | "
                  f"{r['cpu_ms_per_req_off_median']} | {r['p99_ms_on_median']} | {r['p99_ms_off_median']} | "
                  f"{r['records_per_request_on']} | {r['errors_on'] + r['errors_off']} | "
                  f"{'yes' if r['target_met'] else 'NO'} |")
    s = result.get("sink")
    if s:
        st, dr = s["steady"], s["drain"]
        print(f"\n## Sink at {st['rate_target']:g} records/s for {st['seconds']:g} s "
              f"(batch {s['config']['sink_batch']}, flush {s['config']['sink_flush_seconds']} s; "
              f"first {st['skipped_first_s']:g} s skipped)\n")
        print("| figure | p50 | p99 | max |")
        print("|---|---:|---:|---:|")
        for name, key in (("lag, records (XINFO lag + pending)", "lag_records"),
                          ("lag, records (sink's backlog metric)", "lag_records_sink_metric"),
                          ("age of newest written record, s", "newest_written_age_s"),
                          ("age of oldest unwritten record, s", "oldest_unwritten_age_s"),
                          ("sink CPU %, per second", "sink_cpu_percent_per_second")):
            v = st[key]
            print(f"| {name} | {v.get('p50')} | {v.get('p99')} | {v.get('max')} |")
        print(f"\nfed {st['fed_per_s']}/s, written {st['written_per_s']}/s, sink CPU "
              f"{st['sink_cpu_percent']}% of a core (whole feed, {st['sink_cpu_us_per_record']} us/record), "
              f"RSS {st['sink_rss_mib']} MiB; caught up {st['caught_up_after_feed_s']} s after the feed "
              f"stopped")
        print(f"max rate: backlog {dr['backlog']:,} drained in {dr['drain_s']} s (from the sink's start) = "
              f"{dr['records_per_s']} records/s; {dr['records_per_s_after_first_batch']} records/s after the "
              f"first batch (written at {dr['first_batch_written_s']} s); sink CPU "
              f"{dr['sink_cpu_percent']}% ({dr['sink_cpu_us_per_record']} us/record), RSS "
              f"{dr['sink_rss_mib']} MiB")
        print(f"check: {s['check']}")
    m = result.get("memory")
    if m:
        print(f"\n## Memory, MAXLEN ~ {m['config']['maxlen']:,}, {m['config']['records']:,} records, "
              f"no sink\n")
        print("| appended | XLEN | used_memory MiB | used_memory_rss MiB |")
        print("|---:|---:|---:|---:|")
        tl = m["timeline"]
        for p in tl[:: max(1, len(tl) // 10)] + ([tl[-1]] if (len(tl) - 1) % max(1, len(tl) // 10) else []):
            print(f"| {p['appended']:,} | {p['xlen']:,} | {p['used_memory_mib']} | "
                  f"{p['used_memory_rss_mib']} |")
        a = m["after_sink"]
        print(f"| after a sink caught up ({a['catch_up_s']} s) | {a['xlen']:,} | {a['used_memory_mib']} | "
              f"{a['used_memory_rss_mib']} |")
        print(f"| after that sink stopped | {a['xlen']:,} | {a['used_memory_mib_after_sink_stopped']} | |")
        p = m["plateau"]
        print(f"\nplateau: {'yes' if p['plateaued'] else 'NO'}: after the cap "
              f"{p['used_memory_mib_min_after_cap']}..{p['used_memory_mib_max_after_cap']} MiB, XLEN "
              f"{p['xlen_after_cap'][0]:,}..{p['xlen_after_cap'][1]:,}; ~{p['bytes_per_entry']} B/entry for "
              f"records of ~{p['mean_record_chars']} characters (stream {p['stream_memory_usage_mib']} MiB "
              f"by MEMORY USAGE): ~{p['projected_mib_at_1m_entries']} MiB at the service's default cap "
              f"(1,000,000)")
        print(f"sink: pending {a['pending']}, lag {a['lag']}, wrote {a['records_written']:.0f} of "
              f"{m['config']['records']:,} appended; overruns reported {a['overruns_reported']:.0f}, error "
              f"lines {len(a['sink_log_errors'])}")


def ensure_models(args: argparse.Namespace) -> Path:
    if args.models:
        return args.models
    mall = args.out / "eventlog-mall"
    models = mall / "models"
    if (models / "CURRENT").is_file():
        return models
    log = args.out / "logs" / "eventlog-mall.log"
    print(f"-- making a small mall in {mall} (once; output in {log}) ...", flush=True)
    mallrec = [PY, "-m", "service.cli"]
    with open(log, "wb") as f:
        subprocess.run([*mallrec, "synth", "--members", "20000", "--items", "5000", "--events", "300000",
                        "--out", str(mall)], check=True, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        subprocess.run([*mallrec, "train", "--events", str(mall / "events.csv"), "--items",
                        str(mall / "items.csv"), "--members", str(mall / "members.csv"),
                        "--out", str(models)], check=True, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    return models


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    ap.add_argument("--models", type=Path, help="models dir (mallrec train --out) for the throughput servers "
                                                "and the ids of the records; default: a small mall made once")
    ap.add_argument("--only", default=",".join(ALL), help="comma separated, from throughput, sink, memory")
    g = ap.add_argument_group("throughput")
    g.add_argument("--rounds", type=int, default=4, help="rounds; each runs both ops with the log on and "
                                                        "off, the order flipping every round")
    g.add_argument("--duration", type=float, default=6.0, help="measured seconds per phase")
    g.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each phase")
    g.add_argument("--concurrency", type=int, default=32, help="requests in flight (closed loop)")
    g.add_argument("--channels", type=int, default=4, help="client connections")
    g.add_argument("--slot", default="check_in", help="the Recommend slot")
    g.add_argument("--track-batch", type=int, default=10, help="events per TrackEvents call")
    g.add_argument("--throughput-maxlen", type=int, default=50_000,
                   help="MALLREC_LOG_MAXLEN of the 'on' server: small, so the stream reaches its cap within "
                        "a round and the trimming XADD does in steady state is measured")
    g = ap.add_argument_group("sink")
    g.add_argument("--sink-rate", type=float, default=5000.0,
                   help="records/s appended during the steady phase")
    g.add_argument("--sink-seconds", type=float, default=60.0, help="length of the steady phase")
    g.add_argument("--sink-skip", type=float, default=5.0,
                   help="seconds at the start of the steady phase left out of the lag figures")
    g.add_argument("--sample-interval", type=float, default=1.0, help="seconds between lag samples")
    g.add_argument("--backlog", type=int, default=500_000,
                   help="records appended before a sink starts (its max rate)")
    g.add_argument("--sink-batch", type=int, default=None, help="mallrec sink --batch (default: the sink's)")
    g.add_argument("--sink-flush-seconds", type=float, default=None,
                   help="mallrec sink --flush-seconds (default: the sink's)")
    g.add_argument("--sink-maxlen", type=int, default=1_000_000, help="the stream's cap while feeding (the "
                                                                     "service's default)")
    g.add_argument("--drain-timeout", type=float, default=240.0,
                   help="give up waiting for a sink to catch up after this long")
    g.add_argument("--keep-log", action="store_true",
                   help="keep the sink's Parquet folder (its path goes into the JSON)")
    g = ap.add_argument_group("memory")
    g.add_argument("--memory-maxlen", type=int, default=200_000, help="the stream's cap (MAXLEN ~)")
    g.add_argument("--memory-factor", type=int, default=3, help="append this many times the cap")
    ap.add_argument("--out", type=Path, default=ROOT / "load_tests" / "results", help="results folder")
    ap.add_argument("--tag", default="", help="suffix for the result file name")
    args = ap.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = set(only) - set(ALL)
    if bad:
        ap.error(f"--only: unknown {sorted(bad)}; from {', '.join(ALL)}")
    args.out.mkdir(parents=True, exist_ok=True)
    logdir = args.out / "logs"
    logdir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"bench_eventlog-{stamp}{'-' + args.tag if args.tag else ''}"
    from load_tests.run import git_state

    result: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "command": " ".join([Path(PY).name, "-m", "load_tests.bench_eventlog", *sys.argv[1:]]),
                    "machine": f"{os.cpu_count()} cores (shared), load average at start "
                               f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
                    "code": git_state(),
                    "redis": subprocess.run(["redis-server", "--version"], capture_output=True,
                                            text=True).stdout.strip()}
    print(f"{result['started']}  {result['machine']}", flush=True)
    args.models = ensure_models(args)
    from load_tests.loadgen import Population

    pop = Population.from_models(args.models)
    procs = Procs()
    try:
        if "throughput" in only:
            result["throughput"] = measure_throughput(args, procs, logdir, stamp)
            procs.stop_all()
        if "sink" in only:
            result["sink"] = measure_sink(args, procs, logdir, stamp, pop.members, pop.items)
            procs.stop_all()
        if "memory" in only:
            result["memory"] = measure_memory(args, procs, logdir, stamp, pop.members, pop.items)
    finally:
        procs.stop_all()
        result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(result, indent=1, default=str))
        print_tables(result)
        print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
