"""Client CPU of the state read, both ways `RedisStateStore.read` can ask: one EVALSHA (the server's
read) and redis-py's pipeline of LRANGE + HGETALL (`scripted_read=False`, `rules preview`'s read).

    .venv/bin/python -m load_tests.bench_redis_read [--url redis://127.0.0.1:6379/14] [--n 2000] [--passes 3]

Writes 20 events and 30 impressions for one member under a throwaway prefix, then reads them
``--n`` times each way, ``--passes`` alternating passes after one warm-up read each, through the
store itself (the whole read: round trip, events decoded, impressions counted). Prints microseconds
of this process's CPU per read and deletes the keys. The Redis server's own CPU is not counted: it
runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import redis

from service.domain import Event
from service.state.redis_store import RedisStateStore

NOW = 1_700_000_000


async def bench(url: str, n: int, passes: int, prefix: str) -> None:
    stores = {"one EVALSHA": RedisStateStore(url, prefix=prefix, timeout=1.0),
              "pipeline (LRANGE + HGETALL)": RedisStateStore(url, prefix=prefix, timeout=1.0,
                                                             scripted_read=False)}
    try:
        writer = stores["one EVALSHA"]
        await writer.record_events([Event("m1", f"item{i}", "view", NOW + i) for i in range(20)])
        await writer.record_served("m1", [f"item{i}" for i in range(30)], NOW)
        await writer.flush()
        for store in stores.values():  # warm-up: connections, the script's first load
            await store.read("m1", NOW)
        for _ in range(passes):
            for name, store in stores.items():
                start = time.process_time()
                for _ in range(n):
                    state = await store.read("m1", NOW)
                assert not state.degraded and len(state.recent) == 20
                print(f"{name:28s} {(time.process_time() - start) / n * 1e6:6.0f} us CPU per read")
    finally:
        for store in stores.values():
            await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--n", type=int, default=2000, help="reads per pass")
    ap.add_argument("--passes", type=int, default=3, help="passes of each, alternating")
    args = ap.parse_args()
    prefix = f"mallrec-bench-read-{uuid.uuid4().hex[:8]}:"
    try:
        asyncio.run(bench(args.url, args.n, args.passes, prefix))
    finally:
        client = redis.Redis.from_url(args.url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


if __name__ == "__main__":
    main()
