"""Load generator for the Recommender gRPC API: bounded, loopback, several client processes.

Two modes, both bounded (a request count or a duration; the run always stops by itself):

* closed loop (``--concurrency C``): C requests in flight per process, each sent when the previous
  one answers; measures the most the server can do (throughput).
* open loop (``--rps R``): requests sent on a fixed schedule whatever the server does, latency
  measured from the *scheduled* send time (no coordinated omission); measures tail latency at a
  given load.

Traffic is a mix of operations (``recommend:<slot>``, ``page``, ``track``, ``similar``) over members
drawn like real traffic: a small hot set takes a large share, most requests hit members seen once
(cold), and a share are unknown member ids (cold start). Requests are built and serialised before
the clock starts, so the client spends its CPU on gRPC, not on building protobufs.

    python -m load_tests.loadgen --target 127.0.0.1:50051 --models mallrec-data/models \\
        --mix recommend:check_in=1 --duration 20 --concurrency 32 --procs 2 [--server-pid PID]
    python -m load_tests.loadgen ... --rps 1000 --duration 30

``--server-pid`` adds the server's CPU (cores used) and RSS over the measured window (psutil).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from service.api.gen.mallrec.v1 import recommender_pb2 as pb

SLOTS = ("search_box", "check_in", "delivery")
METHODS = {"recommend": "Recommend", "page": "RecommendPage", "track": "TrackEvents",
           "similar": "SimilarItems"}
RESPONSES = {"Recommend": pb.RecommendResponse, "RecommendPage": pb.RecommendPageResponse,
             "TrackEvents": pb.TrackEventsResponse, "SimilarItems": pb.SimilarItemsResponse}
SERVICE = "/mallrec.v1.Recommender/"
TRACK_EVENTS = ("view", "click", "fav", "cart", "purchase", "impression")
TRACK_P = (0.70, 0.12, 0.03, 0.06, 0.03, 0.06)


# --------------------------------------------------------------------------- workload


@dataclass
class Population:
    """Ids the traffic is drawn from (known members, catalogue items, search words)."""

    members: np.ndarray  # str, members the model knows
    items: np.ndarray  # str
    words: list[str]  # search box vocabulary (brands, categories, tags)

    @classmethod
    def from_models(cls, models_dir: str | Path) -> Population:
        """Read ids from the live bundle (MODELS_DIR/CURRENT) without loading the model."""
        import pyarrow.parquet as pq

        from service.model_bundle import resolve

        path = resolve(models_dir)
        members = pq.read_table(path / "members.parquet", columns=["member_id"]).column(0)
        items = pq.read_table(path / "items.parquet", columns=["item_id", "category", "brand", "tags"])
        words: set[str] = set()
        for col in ("category", "brand", "tags"):
            for text in items.column(col).unique().to_pylist():
                words.update(str(text or "").split())
        return cls(members.to_numpy(zero_copy_only=False).astype(str),
                   items.column("item_id").to_numpy(zero_copy_only=False).astype(str),
                   sorted(w for w in words if w))

    @classmethod
    def synthetic(cls, members: int = 1000, items: int = 500) -> Population:
        return cls(np.array([str(5_000_001 + i) for i in range(members)]),
                   np.array([str(100_001 + i) for i in range(items)]), ["serum", "brand001", "tea", "new"])


@dataclass
class Workload:
    """What the traffic looks like; every field is reported with the results."""

    mix: dict[str, float]  # op -> share, e.g. {"recommend:check_in": 0.5, "page": 0.3, "track": 0.2}
    count: int = 10  # items asked per slot
    hot_fraction: float = 0.01  # share of known members that are "hot"
    hot_share: float = 0.40  # share of requests that go to hot members
    unknown_share: float = 0.05  # share of requests for members the model has never seen
    query_share: float = 0.8  # search box requests with text typed
    seed: int = 0

    def describe(self) -> str:
        mix = ", ".join(f"{op} {w:g}" for op, w in self.mix.items())
        return (f"mix [{mix}], {self.count} items/slot; members: {self.hot_share:.0%} of requests on "
                f"the hottest {self.hot_fraction:.0%}, {self.unknown_share:.0%} unknown ids, the rest "
                f"uniform over all known members")


def parse_mix(text: str) -> dict[str, float]:
    """``recommend:check_in=3,page=1,track=1`` -> normalised shares (``recommend:slots`` = the three)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        op, _, w = part.partition("=")
        op, weight = op.strip(), float(w or 1)
        ops = [f"recommend:{s}" for s in SLOTS] if op == "recommend:slots" else [op]
        for o in ops:
            kind = o.split(":", 1)[0]
            if kind not in METHODS or (kind == "recommend" and ":" not in o):
                raise ValueError(f"unknown op {o!r}: use recommend:<slot>, recommend:slots, page, track, "
                                 f"similar")
            mix[o] = mix.get(o, 0.0) + weight / len(ops)
    total = sum(mix.values())
    if not mix or total <= 0:
        raise ValueError(f"empty mix {text!r}")
    return {op: w / total for op, w in mix.items()}


def build_requests(pop: Population, wl: Workload, n: int, seed: int) -> list[tuple[str, str, bytes]]:
    """``n`` (op, method path, serialised request), drawn from the workload; deterministic per seed."""
    rng = np.random.default_rng([wl.seed, seed])
    ops = list(wl.mix)
    which = rng.choice(len(ops), n, p=np.array([wl.mix[o] for o in ops]))
    members = _members(pop, wl, n, rng)
    item_w = 1.0 / (np.arange(len(pop.items)) + 10.0)  # Zipf-like item popularity (random ranks)
    item_perm = np.random.default_rng(wl.seed).permutation(len(pop.items))
    drawn = pop.items[item_perm[rng.choice(len(pop.items), 5 * n + 5, p=item_w / item_w.sum())]].tolist()
    next_item = 0
    words = np.array(pop.words or [""])
    out = []
    for i in range(n):
        op = ops[which[i]]
        kind, _, slot = op.partition(":")
        member = members[i]

        def items(k: int) -> list[str]:
            nonlocal next_item
            next_item = (next_item + k) % (len(drawn) - 5)
            return [str(x) for x in drawn[next_item:next_item + k]]

        def context(slots: tuple[str, ...]) -> pb.Context:
            ctx = pb.Context(page_id="loadtest")
            if "search_box" in slots and rng.random() < wl.query_share:
                ctx.query = " ".join(rng.choice(words, 1 + int(rng.random() < 0.15)).tolist())
            if "delivery" in slots:
                ctx.order_item_ids.extend(items(int(rng.integers(1, 4))))
            return ctx

        if kind == "recommend":
            req = pb.RecommendRequest(member_id=member, slot=slot, count=wl.count, context=context((slot,)))
        elif kind == "page":
            req = pb.RecommendPageRequest(member_id=member, context=context(SLOTS),
                                          slots=[pb.SlotRequest(slot=s, count=wl.count) for s in SLOTS])
        elif kind == "track":
            k = int(rng.integers(1, 6))
            events = rng.choice(len(TRACK_EVENTS), k, p=TRACK_P)
            req = pb.TrackEventsRequest(events=[
                pb.Event(member_id=member, item_id=it, event=TRACK_EVENTS[e], slot="check_in")
                for it, e in zip(items(k), events, strict=True)])
        else:  # similar
            req = pb.SimilarItemsRequest(item_id=items(1)[0], count=wl.count)
        out.append((op, SERVICE + METHODS[kind], req.SerializeToString()))
    return out


def _members(pop: Population, wl: Workload, n: int, rng: np.random.Generator) -> list[str]:
    known = pop.members
    perm = np.random.default_rng(wl.seed).permutation(len(known))  # the same hot set in every process
    hot = perm[: max(1, int(len(known) * wl.hot_fraction))]
    r = rng.random(n)
    idx = np.where(r < wl.hot_share, hot[rng.integers(0, len(hot), n)], rng.integers(0, len(known), n))
    unknown = r >= 1.0 - wl.unknown_share
    names = known[idx].astype(object)
    names[unknown] = [f"unknown-{x}" for x in rng.integers(0, 1 << 40, int(unknown.sum()))]
    return names.tolist()


# --------------------------------------------------------------------------- client process


@dataclass
class ClientPlan:
    """One client process's share of a run."""

    target: str
    requests: list[tuple[str, str, bytes]]
    start_at: float  # time.monotonic() (system-wide on Linux) at which to start sending
    duration: float | None  # seconds of sending (None: until ``count``)
    count: int | None  # requests to send (None: until ``duration``)
    warmup: float = 0.0  # seconds at the start whose requests are not recorded
    concurrency: int = 32  # closed loop: in flight at once
    rps: float | None = None  # open loop: this process's rate
    max_in_flight: int = 4000  # open loop: beyond this, a scheduled request is counted as dropped
    channels: int = 4  # separate TCP connections (SO_REUSEPORT balances per connection)
    timeout: float = 2.0  # per-request deadline, seconds


@dataclass
class ClientResult:
    ops: list[str] = field(default_factory=list)  # op per recorded request
    sent_at: list[float] = field(default_factory=list)  # scheduled (open) or actual (closed) send time
    latency: list[float] = field(default_factory=list)  # seconds
    codes: list[str] = field(default_factory=list)  # "OK" or the gRPC status name
    versions: Counter = field(default_factory=Counter)
    version_first_seen: dict[str, float] = field(default_factory=dict)
    version_last_seen: dict[str, float] = field(default_factory=dict)
    degraded: int = 0
    empty: int = 0  # recommend/page answers with no items at all
    dropped: int = 0  # open loop: scheduled but not sent (too many in flight: the client gave up)
    errors_sample: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # this client process's CPU time during the run
    first_send: float = 0.0
    last_done: float = 0.0


async def _client(plan: ClientPlan) -> ClientResult:
    import grpc

    res = ClientResult()
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 16 << 20)]
    channels = [grpc.aio.insecure_channel(plan.target, options=opts + [("mallrec.loadgen.channel", i)])
                for i in range(plan.channels)]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 10)
    methods = [{path: ch.unary_unary(path, request_serializer=None,
                                     response_deserializer=None)
                for path in {p for _, p, _ in plan.requests}} for ch in channels]
    n_req = len(plan.requests)
    record_from = plan.start_at + plan.warmup
    stop_at = plan.start_at + plan.duration if plan.duration is not None else float("inf")
    limit = plan.count if plan.count is not None else 1 << 62
    counter = 0
    cpu0 = time.process_time()

    async def one(i: int, scheduled: float) -> None:
        op, path, body = plan.requests[i % n_req]
        fn = methods[i % len(methods)][path]
        code = "OK"
        try:
            raw = await fn(body, timeout=plan.timeout)
        except grpc.aio.AioRpcError as e:
            code = e.code().name
            raw = None
            if len(res.errors_sample) < 5:
                res.errors_sample.append(f"{op}: {code}: {e.details()}")
        done = time.monotonic()
        if scheduled < record_from:
            return
        res.ops.append(op)
        res.sent_at.append(scheduled)
        res.latency.append(done - scheduled)
        res.codes.append(code)
        res.last_done = max(res.last_done, done)
        if raw is not None:
            resp = RESPONSES[path.rsplit("/", 1)[1]].FromString(raw)
            version = getattr(resp, "model_version", "")
            if version:
                res.versions[version] += 1
                res.version_first_seen.setdefault(version, scheduled)
                res.version_last_seen[version] = scheduled
            if getattr(resp, "degraded", False):
                res.degraded += 1
            if isinstance(resp, pb.RecommendResponse):
                res.empty += not resp.items
            elif isinstance(resp, pb.RecommendPageResponse):
                res.empty += not any(s.items for s in resp.slots)

    await asyncio.sleep(max(0.0, plan.start_at - time.monotonic()))
    res.first_send = time.monotonic()
    if plan.rps is None:  # closed loop
        async def worker() -> None:
            nonlocal counter
            while counter < limit and time.monotonic() < stop_at:
                i = counter
                counter += 1
                await one(i, time.monotonic())

        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    else:  # open loop: request i is due at start + i/rps, sent late only if the loop itself is late
        interval = 1.0 / plan.rps
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while i < limit:
            due = plan.start_at + i * interval
            if due >= stop_at:
                break
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            if len(tasks) >= plan.max_in_flight:
                res.dropped += 1
            else:
                t = asyncio.get_running_loop().create_task(one(i, due))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.gather(*tasks)
    res.cpu_s = time.process_time() - cpu0
    for ch in channels:
        await ch.close()
    return res


def _client_main(plan: ClientPlan, conn) -> None:  # type: ignore[no-untyped-def]
    try:
        res = asyncio.run(_client(plan))
        conn.send(("ok", res))
    except BaseException as e:  # report, never hang the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


# --------------------------------------------------------------------------- server monitor


class ProcMonitor:
    """Samples CPU time and RSS of the server process(es) (psutil) every ``interval`` seconds."""

    def __init__(self, pids: list[int], interval: float = 0.25) -> None:
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.interval = interval
        self.samples: list[tuple[float, list[float], list[int]]] = []  # (t, cpu_s per proc, rss per proc)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[float, list[float], list[int]]:
        cpu, rss = [], []
        for p in self.procs:
            try:
                t = p.cpu_times()
                cpu.append(t.user + t.system)
                rss.append(p.memory_info().rss)
            except Exception:  # a process that died: keep the shape
                cpu.append(float("nan"))
                rss.append(0)
        s = (time.monotonic(), cpu, rss)
        self.samples.append(s)
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> ProcMonitor:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def window(self, t0: float, t1: float) -> dict:
        """CPU (cores busy, per process and total) and RSS (MiB) between t0 and t1."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1] or self.samples[-1:]
        before = max((s for s in self.samples if s[0] <= t0), key=lambda s: s[0], default=inside[0])
        after = min((s for s in self.samples if s[0] >= t1), key=lambda s: s[0], default=inside[-1])
        wall = max(after[0] - before[0], 1e-9)
        cpu = [(a - b) / wall for a, b in zip(after[1], before[1], strict=True)]
        rss_max = [max(s[2][i] for s in inside) / 2**20 for i in range(len(self.procs))]
        return {"cpu_cores": round(sum(cpu), 3), "cpu_cores_per_process": [round(c, 3) for c in cpu],
                "cpu_s": round(sum(a - b for a, b in zip(after[1], before[1], strict=True)), 3),
                "rss_mib_max": round(sum(rss_max), 1),
                "rss_mib_end": round(sum(after[2]) / 2**20, 1)}


# --------------------------------------------------------------------------- running and reporting


@dataclass
class RunSpec:
    target: str
    duration: float | None = 20.0
    count: int | None = None
    warmup: float = 2.0
    concurrency: int = 32  # per process (closed loop)
    rps: float | None = None  # total (open loop)
    procs: int = 1
    channels: int = 4
    timeout: float = 2.0
    pool: int = 20_000  # distinct pre-built requests per process (cycled)


def run(spec: RunSpec, pop: Population, wl: Workload, server_pids: list[int] | None = None,
        during: list[tuple[float, object]] | None = None) -> dict:
    """Run the load; return a JSON-able report. ``during``: (seconds after start, callable) hooks
    run by this process while the load runs (e.g. publish a model for the swap test)."""
    if spec.duration is None and spec.count is None:
        raise ValueError("a run needs a duration or a count (runs are always bounded)")
    pool = spec.pool if spec.count is None else min(spec.pool, max(1, spec.count // spec.procs + 1))
    plans_req = [build_requests(pop, wl, pool, seed=p) for p in range(spec.procs)]
    ctx = mp.get_context("spawn")
    start_at = time.monotonic() + 1.5 + 0.2 * spec.procs  # time for the children to start
    procs, conns = [], []
    for p in range(spec.procs):
        plan = ClientPlan(target=spec.target, requests=plans_req[p], start_at=start_at,
                          duration=None if spec.duration is None else spec.duration + spec.warmup,
                          count=None if spec.count is None else spec.count // spec.procs,
                          warmup=spec.warmup, concurrency=spec.concurrency,
                          rps=None if spec.rps is None else spec.rps / spec.procs,
                          channels=spec.channels, timeout=spec.timeout)
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_client_main, args=(plan, child), daemon=True)
        proc.start()
        child.close()
        procs.append(proc)
        conns.append(parent)
    monitor = ProcMonitor(server_pids) if server_pids else None
    hooks = sorted(during or [], key=lambda h: h[0])
    hook_log = []
    results: list[ClientResult] = []
    try:
        if monitor:
            monitor.__enter__()
        for at, fn in hooks:
            time.sleep(max(0.0, start_at + at - time.monotonic()))
            t = time.monotonic()
            out = fn()  # type: ignore[operator]
            hook_log.append({"at_s": round(t - start_at, 3), "result": out})
        for p, conn in zip(procs, conns, strict=True):
            limit = (spec.duration or 0) + spec.warmup + 120 + (spec.count or 0) / 100
            if not conn.poll(limit):
                raise RuntimeError("a client process did not report in time")
            status, payload = conn.recv()
            if status != "ok":
                raise RuntimeError(f"client process failed: {payload}")
            results.append(payload)
            p.join(10)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        if monitor:
            monitor.__exit__()
    report = summarise(results, start_at, spec, wl)
    report["hooks"] = hook_log
    if monitor:
        t0 = start_at + spec.warmup
        t1 = max(r.last_done for r in results) if results else time.monotonic()
        srv = monitor.window(t0, t1)
        srv["rss_mib_start"] = round(sum(monitor.samples[0][2]) / 2**20, 1)
        ok = report["requests_ok"]
        srv["cpu_ms_per_request"] = round(1000 * srv["cpu_s"] / ok, 3) if ok else None
        report["server"] = srv
        report["server_rss_timeline"] = [(round(s[0] - start_at, 2), round(sum(s[2]) / 2**20, 1))
                                         for s in monitor.samples[:: max(1, len(monitor.samples) // 400)]]
    return report


def _pct(lat: np.ndarray) -> dict:
    if len(lat) == 0:
        return {"n": 0}
    q = np.percentile(lat, [50, 95, 99, 99.9]) * 1000
    return {"n": int(len(lat)), "p50_ms": round(q[0], 2), "p95_ms": round(q[1], 2), "p99_ms": round(q[2], 2),
            "p999_ms": round(q[3], 2), "max_ms": round(float(lat.max()) * 1000, 2),
            "mean_ms": round(float(lat.mean()) * 1000, 2)}


def summarise(results: list[ClientResult], start_at: float, spec: RunSpec, wl: Workload) -> dict:
    ops = np.array([o for r in results for o in r.ops])
    sent = np.array([t for r in results for t in r.sent_at]) - start_at
    lat = np.array([x for r in results for x in r.latency])
    codes = np.array([c for r in results for c in r.codes])
    ok = codes == "OK"
    first = min((r.first_send for r in results), default=start_at)
    t0 = max(start_at + spec.warmup, first)
    t1 = max((r.last_done for r in results), default=t0)
    wall = max(t1 - t0, 1e-9)
    versions: Counter = Counter()
    first_seen: dict[str, float] = {}
    last_seen: dict[str, float] = {}
    for r in results:
        versions.update(r.versions)
        for v, t in r.version_first_seen.items():
            first_seen[v] = min(first_seen.get(v, t), t)
        for v, t in r.version_last_seen.items():
            last_seen[v] = max(last_seen.get(v, t), t)
    report = {
        "mode": "open" if spec.rps else "closed",
        "target": spec.target,
        "spec": asdict(spec),
        "workload": {**asdict(wl), "description": wl.describe()},
        "measured_s": round(wall, 3),
        "requests": int(len(lat)),
        "requests_ok": int(ok.sum()),
        "errors": dict(Counter(codes[~ok].tolist())),
        "errors_sample": [e for r in results for e in r.errors_sample][:5],
        "dropped_by_client": sum(r.dropped for r in results),
        "rps": round(float(ok.sum()) / wall, 1),
        "latency": _pct(lat[ok]),
        "by_op": {op: {**_pct(lat[(ops == op) & ok]), "errors": int(((ops == op) & ~ok).sum())}
                  for op in sorted(set(ops.tolist()))},
        "degraded": sum(r.degraded for r in results),
        "empty_answers": sum(r.empty for r in results),
        "model_versions": {v: {"responses": n, "first_s": round(first_seen[v] - start_at, 3),
                               "last_s": round(last_seen[v] - start_at, 3)} for v, n in versions.items()},
        "client_cpu_cores": round(sum(r.cpu_s for r in results) / wall, 3),
        "client_procs": len(results),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    report["_raw"] = {"sent": sent, "latency": lat, "ok": ok, "ops": ops}  # dropped before JSON
    return report


def per_second(report: dict, bucket: float = 1.0) -> list[dict]:
    """p50/p99/errors per time bucket (seconds after start), for timelines (the swap test)."""
    raw = report["_raw"]
    if len(raw["sent"]) == 0:
        return []
    b = np.floor(raw["sent"] / bucket).astype(np.int64)
    out = []
    for k in range(int(b.min()), int(b.max()) + 1):
        sel = b == k
        lat = raw["latency"][sel & raw["ok"]]
        out.append({"t_s": k * bucket, "n": int(sel.sum()), "errors": int((sel & ~raw["ok"]).sum()),
                    "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2) if len(lat) else None,
                    "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 2) if len(lat) else None})
    return out


def window(report: dict, t0: float, t1: float) -> dict:
    """Latency and errors of the requests scheduled between t0 and t1 seconds after start."""
    raw = report["_raw"]
    sel = (raw["sent"] >= t0) & (raw["sent"] < t1)
    return {**_pct(raw["latency"][sel & raw["ok"]]), "errors": int((sel & ~raw["ok"]).sum()),
            "from_s": round(t0, 2), "to_s": round(t1, 2)}


def public(report: dict) -> dict:
    return {k: v for k, v in report.items() if not k.startswith("_")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:50051")
    ap.add_argument("--models", type=Path, help="models dir of the server (member/item ids come from it); "
                                                "without it, synthetic ids (only for the echo server)")
    ap.add_argument("--mix", default="recommend:check_in=1",
                    help="op=share,...: recommend:<slot>, recommend:slots (the three), page, track, similar")
    ap.add_argument("--duration", type=float, default=None, help="seconds of measured load")
    ap.add_argument("--count", type=int, default=None, help="requests to send (instead of --duration)")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=32, help="closed loop: in flight per process")
    ap.add_argument("--rps", type=float, default=None, help="open loop: total target rate")
    ap.add_argument("--procs", type=int, default=1, help="client processes")
    ap.add_argument("--channels", type=int, default=4, help="connections per client process")
    ap.add_argument("--hot-share", type=float, default=0.40)
    ap.add_argument("--unknown-share", type=float, default=0.05)
    ap.add_argument("--server-pid", type=int, action="append", default=[],
                    help="report this process's CPU and RSS (repeat for several workers)")
    ap.add_argument("--json", type=Path, help="write the full report here")
    args = ap.parse_args(argv)
    if args.duration is None and args.count is None:
        args.duration = 10.0
    target = args.target
    host = target.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        sys.exit("loopback targets only (127.0.0.1:PORT)")
    pop = Population.from_models(args.models) if args.models else Population.synthetic()
    wl = Workload(parse_mix(args.mix), hot_share=args.hot_share, unknown_share=args.unknown_share)
    spec = RunSpec(target=target, duration=args.duration, count=args.count, warmup=args.warmup,
                   concurrency=args.concurrency, rps=args.rps, procs=args.procs, channels=args.channels)
    report = public(run(spec, pop, wl, server_pids=args.server_pid or None))
    report.pop("server_rss_timeline", None)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
