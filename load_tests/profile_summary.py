"""Sample a running server with py-spy and turn the stacks into a short text summary.

    python -m load_tests.profile_summary --pid PID --duration 20 --out load_tests/results/profile.txt
    python -m load_tests.profile_summary --raw stacks.txt --out summary.txt   # summarise saved stacks

Samples are of active (not idle) threads; the tables count the server's main thread only (the
event loop runs every request there, so its busy time is the budget a single process splits;
native code that releases the GIL, such as a FAISS search, still shows under the Python frame that
called it). Other threads are listed by share. The summary lists where the samples fall:
by component (our modules, gRPC, protobuf, numpy, Redis, asyncio), by function inclusive of
callees, and by function's own time. py-spy's collapsed stacks are kept beside it (``.stacks``)
for anyone who wants a flame graph (e.g. speedscope.app).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
COMPONENTS = (  # (label, substring of the file path), first match wins
    ("service/grpc_api (translation)", "service/grpc_api.py"),
    ("service/engine (slate, run, trace)", "service/engine/"),
    ("service/candidates", "service/candidates/"),
    ("service/filters", "service/filters/"),
    ("service/steps", "service/steps/"),
    ("service/positions", "service/positions/"),
    ("service/blend", "service/blend.py"),
    ("service/profile (member profile, fold-in)", "service/profile.py"),
    ("service/model (search, fold-in)", "service/model.py"),
    ("service/recommender", "service/recommender.py"),
    ("service/state (Redis)", "service/state/"),
    ("service/metrics", "service/metrics.py"),
    ("service (other)", "service/"),
    ("prometheus_client", "prometheus_client/"),
    ("redis-py", "/redis/"),
    ("grpc", "grpc"),
    ("protobuf", "google/protobuf"),
    ("numpy", "numpy/"),
    ("faiss", "faiss/"),
    ("asyncio", "asyncio/"),
)


def component(file: str) -> str:
    for label, needle in COMPONENTS:
        if needle in file:
            return label
    return "other: " + Path(file).name


def parse(raw: str) -> list[tuple[str, list[tuple[str, str]], int]]:
    """py-spy raw lines -> (thread name, frames root first, samples)."""
    stacks = []
    for line in raw.splitlines():
        line = line.strip()
        if not line:
            continue
        frames_text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = frames_text.split(";")
        thread = "-"
        if parts and parts[0].startswith("thread ("):
            thread = parts.pop(0).partition(": ")[2] or parts[0]
        frames = []
        for f in parts:
            m = _FRAME.match(f)
            frames.append((m["fn"], m["file"]) if m else (f, ""))
        stacks.append((thread, frames, int(count)))
    return stacks


def summarise(raw: str, title: str = "", duration: float | None = None, rate: int = 100,
              top: int = 30) -> str:
    stacks = parse(raw)
    threads: Counter[str] = Counter()
    for thread, _, c in stacks:
        threads[thread] += c
    everything = sum(threads.values()) or 1
    if "MainThread" in threads:
        stacks = [st for st in stacks if st[0] == "MainThread"]
    total = sum(c for _, _, c in stacks) or 1
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    comp_own: Counter[str] = Counter()
    comp_incl: Counter[str] = Counter()
    for _thread, frames, c in stacks:
        if not frames:
            continue
        fn, file = frames[-1]
        own[f"{fn} ({_short(file)})"] += c
        comp_own[component(file)] += c
        for key in {f"{f} ({_short(p)})" for f, p in frames}:
            incl[key] += c
        for key in {component(p) for _, p in frames}:
            comp_incl[key] += c
    out = [title, "=" * len(title)] if title else []
    expected = (f" of {int(duration * rate)} possible ({duration:g} s at {rate} Hz): busy "
                f"{100 * total / (duration * rate):.0f}% of the time") if duration else ""
    out.append(f"{total} samples of the main thread active{expected}")
    out.append("(time inside gRPC's Cython/C core shows as the Python frame that called it, mostly "
               "asyncio's event loop; percentages below are of the main thread's active samples)")
    out += ["", "active samples by thread (% of all threads' samples)"]
    out += [f"{100 * c / everything:8.1f}  {name}" for name, c in threads.most_common()]
    out += ["", "by component (self = time in that code itself; inclusive = with what it calls)",
            f"{'component':48} {'self %':>8} {'incl %':>8}"]
    for name, _ in sorted(comp_incl.items(), key=lambda kv: -comp_own[kv[0]]):
        out.append(f"{name[:48]:48} {100 * comp_own[name] / total:8.1f} {100 * comp_incl[name] / total:8.1f}")
    out += ["", f"top {top} functions, inclusive", f"{'incl %':>7}  function"]
    out += [f"{100 * c / total:7.1f}  {k}" for k, c in incl.most_common(top)]
    out += ["", f"top {top} functions, self", f"{'self %':>7}  function"]
    out += [f"{100 * c / total:7.1f}  {k}" for k, c in own.most_common(top)]
    return "\n".join(out) + "\n"


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


class Recording:
    def __init__(self, proc: subprocess.Popen[bytes], raw: Path, out: Path, title: str, duration: float,
                 rate: int) -> None:
        self.proc, self.raw, self.out, self.title = proc, raw, out, title
        self.duration, self.rate = duration, rate

    def finish(self) -> Path:
        try:
            self.proc.wait(self.duration + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        text = self.raw.read_text() if self.raw.exists() else ""
        self.out.write_text(summarise(text, self.title, self.duration, self.rate))
        return self.out


def record(pid: int, duration: float, out: Path, title: str = "", rate: int = 100) -> Recording:
    """Start py-spy on ``pid`` for ``duration`` seconds; ``.finish()`` waits and writes the summary."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raw = out.with_suffix(".stacks")
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(round(duration))),
                             "--rate", str(rate), "--format", "raw", "--threads",
                             "--output", str(raw)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Recording(proc, raw, out, title, duration, rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--raw", type=Path, help="summarise these saved py-spy raw stacks instead")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    if args.raw:
        args.out.write_text(summarise(args.raw.read_text(), args.title))
    elif args.pid:
        record(args.pid, args.duration, args.out, args.title).finish()
    else:
        sys.exit("give --pid PID or --raw FILE")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
