"""The lag of a Redis Streams listener where Redis cannot say it (``lag`` is nil in
``XINFO GROUPS``: Redis < 7, or an entry deleted after the group's last delivered id):
the undelivered entries are counted, plus the pending ones."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from arroyo.brokers import open_listener
from arroyo.brokers.redis.streams import RedisStreamListener
from arroyo.runtime.lag import source


async def test_without_the_lag_from_redis_the_unread_and_pending_entries_are_counted(
    redis_address: str, client: aioredis.Redis, stream: Callable[[str], str]
) -> None:
    name = stream("lag")
    for i in range(1, 7):
        await client.xadd(name, {"f": "v"}, id=f"{i}-0")
    listener = open_listener(f"redis://{redis_address}/{name}?group=g&start=0")
    assert isinstance(listener, RedisStreamListener)
    await listener.connect()
    try:
        key = source(stream=name, group="g")
        assert await listener.lag() == {key: 6}  # Redis' own lag: 6 unread
        await client.xreadgroup("g", "c", {name: ">"}, count=2)  # 2 pending
        await client.xack(name, "g", "1-0")
        assert await listener.lag() == {key: 5}  # 4 unread + 1 pending
        await client.xdel(name, "4-0")  # Redis cannot tell its lag any more
        (group,) = await client.xinfo_groups(name)
        assert group["lag"] is None
        assert await listener.lag() == {key: 4}  # 3 unread (3, 5, 6) + 1 pending
    finally:
        await listener.close()
