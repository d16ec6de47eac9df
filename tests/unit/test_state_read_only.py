"""`rules preview --redis-url` reads the live state as a user that may not run scripts."""

from __future__ import annotations

import asyncio

import redis

from service.domain import Event
from service.state.redis_store import RedisStateStore
from tests.fixtures.redis_server import RedisProcess

NOW = 1_760_000_000


def test_plain_reads_work_for_a_user_without_scripts_and_scripted_ones_do_not() -> None:
    with RedisProcess() as server:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", "viewer", "on", ">pw", "~*", "+@read", "+ping", "-@scripting")
        viewer_url = server.url.replace("redis://", "redis://viewer:pw@")

        async def go() -> tuple[bool, bool, list[str]]:
            writer = RedisStateStore(server.url, prefix="t:")
            await writer.record_events([Event("m1", "i1", "view", NOW, "check_in", "r1")])
            await writer.close()
            plain = RedisStateStore(viewer_url, prefix="t:", timeout=2.0, scripted_read=False)
            scripted = RedisStateStore(viewer_url, prefix="t:", timeout=2.0)
            try:
                ok, refused = await plain.read("m1", NOW), await scripted.read("m1", NOW)
            finally:
                await plain.close()
                await scripted.close()
            return ok.degraded, refused.degraded, [e.item_id for e in ok.recent]

        plain_degraded, scripted_degraded, items = asyncio.run(go())
        assert not plain_degraded and items == ["i1"]
        assert scripted_degraded  # the server's scripted read needs EVAL: the preview must not use it
