"""What the Redis tests against a real server share: a client, and stream names unique
to the test (deleted afterwards)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis


@pytest.fixture
async def client(redis_address: str) -> AsyncIterator[aioredis.Redis]:
    host, port = redis_address.rsplit(":", 1)
    redis = aioredis.Redis(host=host, port=int(port))
    yield redis
    await redis.aclose()


@pytest.fixture
async def stream(
    client: aioredis.Redis, unique_name: Callable[[str], str]
) -> AsyncIterator[Callable[[str], str]]:
    """Makes stream names unique to the test; deletes the streams afterwards."""
    names: list[str] = []

    def make(tag: str = "stream") -> str:
        names.append(unique_name(tag))
        return names[-1]

    yield make
    if names:
        await client.delete(*names)
