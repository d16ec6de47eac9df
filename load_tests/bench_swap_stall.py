"""How long a bundle load in a thread stalls the event loop beside it (what a hot swap does).

    .venv/bin/python -m load_tests.bench_swap_stall --models MODELS_DIR [--server-root CHECKOUT]

Loads the bundle once as a server starts (imports, first-use caches), then again the way a hot swap
does (``service.reload.beside_serving``: its own thread, lower CPU priority, the reload's GIL switch
interval unless --switch-interval), while the main thread's event loop wakes every millisecond;
prints the load time and the worst gaps between two wake-ups (a gap is the GIL held by the loader
for that long: requests and Redis replies wait). ``--server-root`` measures another checkout's code
(before/after).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, type=Path, help="models dir or a bundle folder")
    ap.add_argument("--server-root", type=Path, help="import service/ from this checkout")
    ap.add_argument("--verify", action="store_true", help="also check the files' checksums")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="GIL switch interval during the load (default: what the reload path uses, "
                         "service.reload.LOAD_SWITCH_INTERVAL; Python's own default is 0.005)")
    ap.add_argument("--where", type=float, default=0.0, metavar="MS",
                    help="for every gap longer than MS, print where the loader thread is when the loop "
                         "gets the GIL back (the work that just held it, or the work right after)")
    args = ap.parse_args(argv)
    if args.server_root:
        sys.path.insert(0, str(args.server_root.resolve()))
    import onnxruntime  # noqa: F401  (imported at start-up in a server: not part of a swap)

    from service.model import ServingModel
    from service.model_bundle import load
    from service.rerank.runtime import rerank_runtime

    done = threading.Event()
    took: list[float] = []
    loader_ident: list[int] = []

    def build() -> None:
        loader_ident.append(threading.get_ident())
        t0 = time.perf_counter()
        model = ServingModel(load(args.models, verify=args.verify))
        rerank_runtime(model)
        model.member("a member id")
        took.append(time.perf_counter() - t0)
        done.set()

    build()  # the server's start-up load: imports and first-use caches are not part of a swap
    done.clear()
    took.clear()
    loader_ident.clear()
    try:
        from service.reload import beside_serving
    except ImportError:  # an older checkout (--server-root): a plain thread, as it loaded
        beside_serving = None

    seen: list[tuple[float, str]] = []

    async def watch() -> list[float]:
        gaps = []
        if beside_serving is not None:
            task = asyncio.ensure_future(beside_serving(build))
        else:
            threading.Thread(target=build, daemon=True).start()
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            if args.where and (now - last) * 1000 > args.where:
                frame = sys._current_frames().get(loader_ident[0]) if loader_ident else None
                stack = []
                while frame is not None and len(stack) < 3:
                    code = frame.f_code
                    stack.append(f"{code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})")
                    frame = frame.f_back
                seen.append((now - last, " < ".join(stack)))
            last = now
        if beside_serving is not None:
            await task
        return gaps

    try:
        from service.reload import LOAD_SWITCH_INTERVAL
    except ImportError:  # an older checkout (--server-root) without it
        LOAD_SWITCH_INTERVAL = sys.getswitchinterval()  # noqa: N806
    interval = args.switch_interval or LOAD_SWITCH_INTERVAL
    default = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        gaps = sorted(asyncio.run(watch()), reverse=True)
    finally:
        sys.setswitchinterval(default)
    print(f"GIL switch interval during the load: {interval * 1000:g} ms")
    print(f"load {took[0]:.2f} s; loop gaps, worst 8 (ms): {[round(1000 * g, 1) for g in gaps[:8]]}; "
          f"> 50 ms: {sum(g > 0.05 for g in gaps)}")
    for gap, where in sorted(seen, reverse=True)[:20]:
        print(f"  {1000 * gap:6.1f} ms  loader at: {where}")


if __name__ == "__main__":
    main()
