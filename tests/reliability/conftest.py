"""Fixtures of the reliability tests: per-test Redis and RabbitMQ names (deleted
afterwards), a private redis-server to kill, and operators that fail on purpose."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import redis

    from tests.reliability.private_redis import PrivateRedis

TAGS = ("source", "sink", "dlq")


@pytest.fixture
def redis_client(redis_address: str) -> Iterator[redis.Redis]:
    import redis

    host, port = redis_address.rsplit(":", 1)
    with redis.Redis(host=host, port=int(port)) as connection:
        yield connection


@pytest.fixture
def redis_names(
    redis_client: redis.Redis, unique_name: Callable[[str], str]
) -> Iterator[dict[str, str]]:
    """Stream names unique to the test (``source``, ``sink``, ``dlq``), deleted after it."""
    made = {tag: unique_name(tag) for tag in TAGS}
    yield made
    redis_client.delete(*made.values())


@pytest.fixture
async def private_redis(tmp_path: Path, until: Callable[..., Any]) -> AsyncIterator[PrivateRedis]:
    """A redis-server of this test's own (tests/reliability/private_redis.py), killed at
    the end; the test may kill and start it again. Fails under CI=true (skips otherwise)
    when redis-server is not installed."""
    from tests.reliability.private_redis import PrivateRedis

    if shutil.which("redis-server") is None:
        message = "redis-server is not installed: cannot run a private Redis"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        await until(server.answers, within=20, what="the private redis-server")
        yield server
    finally:
        server.kill()


@pytest.fixture
async def amqp_names(
    amqp_url: str, unique_name: Callable[[str], str]
) -> AsyncIterator[dict[str, str]]:
    """Queue names unique to the test (``source``, ``sink``, ``dlq``), deleted after it."""
    import aio_pika

    made = {tag: unique_name(tag) for tag in TAGS}
    yield made
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in made.values():
            await channel.queue_delete(name)


CRASH_ON_POISON = '''
import os

from arroyo import Event
from arroyo.runtime import Operator


class CrashOnPoison(Operator):
    """Kills the worker process on a message marked poison (as a segfault would)."""

    async def process(self, message):
        if isinstance(message, Event) and message.metadata.get("poison"):
            os._exit(3)
        return message
'''


@pytest.fixture
def crash_on_poison(tmp_path: Path) -> str:
    """An operator that kills its worker process (exit 3) on an Event marked ``poison``,
    written to ``tmp_path/ops.py`` for worker processes; its ``module:class`` path."""
    (tmp_path / "ops.py").write_text(CRASH_ON_POISON)
    return "ops:CrashOnPoison"
