"""Client CPU of the state read: redis-py's pipeline (what `RedisStateStore.read` sends) against
one EVALSHA returning the same replies, on a real Redis.

    .venv/bin/python -m load_tests.bench_redis_read [--url redis://127.0.0.1:6379/14] [--n 2000]

Writes 20 events and a 30-field impressions hash under throwaway keys, reads them ``--n`` times
each way (alternating passes), prints microseconds of this process's CPU per read, and deletes the
keys. The Redis server's own CPU is not counted: it runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio as redis

READ = """
local out = {redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)}
for k = 2, #KEYS do out[k] = redis.call('HGETALL', KEYS[k]) end
return out
"""


async def bench(url: str, n: int) -> None:
    client = redis.from_url(url, decode_responses=True)
    events, hashed = "mallrec-bench-read:events", "mallrec-bench-read:impressions"
    try:
        await client.rpush(events, *[f"{i}|item{i}|view|1700000000" for i in range(20)])
        await client.hset(hashed, mapping={f"s{i}": 3 for i in range(30)})
        script = client.register_script(READ)

        async def pipeline() -> None:
            pipe = client.pipeline(transaction=False)
            pipe.lrange(events, 0, 99)
            pipe.hgetall(hashed)
            await pipe.execute()

        async def evalsha() -> None:
            raw_events, flat = await script(keys=[events, hashed], args=[100])
            dict(zip(flat[::2], flat[1::2], strict=True))  # HGETALL comes back as a flat list

        for _ in range(2):
            for name, read in (("pipeline (LRANGE + HGETALL)", pipeline), ("one EVALSHA", evalsha)):
                start = time.process_time()
                for _ in range(n):
                    await read()
                print(f"{name:28s} {(time.process_time() - start) / n * 1e6:6.0f} us CPU per read")
    finally:
        await client.delete(events, hashed)
        await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    asyncio.run(bench(args.url, args.n))


if __name__ == "__main__":
    main()
