"""A Redis publisher's pipelines against a real server that stops answering (pipeline.py):
the client sets no timer per reply, so the pipeline as a whole must be bounded."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from arroyo import Event, decode
from arroyo.brokers import open_publisher
from arroyo.brokers.redis import RedisStreamPublisher
from arroyo.errors import PublishError
from tests.reliability.private_redis import PrivateRedis

Until = Callable[..., Any]
pytestmark = pytest.mark.redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.kill()


async def test_a_server_that_stops_answering_fails_the_pipeline_after_timeout_and_it_recovers(
    private_redis: PrivateRedis, until: Until
) -> None:
    await until(private_redis.answers, what="the private redis-server answers")
    assert private_redis.process is not None
    publisher = open_publisher(f"redis://{private_redis.address}/out", {"timeout": 0.5})
    assert isinstance(publisher, RedisStreamPublisher)
    await publisher.start()
    try:
        await publisher.send(Event({"n": 1}, b"x", stream="run"))
        os.kill(private_redis.process.pid, signal.SIGSTOP)  # alive, silent
        # Without a bound on the pipeline, this send would wait for ever.
        with pytest.raises(PublishError, match="not confirmed"):
            await asyncio.wait_for(publisher.send(Event({"n": 2}, b"x", stream="run")), 10)
        assert not publisher.connected
        os.kill(private_redis.process.pid, signal.SIGCONT)
        # The connection that was cut short is not reused: its late reply is not taken
        # for the reply of the next command.
        await publisher.send(Event({"n": 3}, b"x", stream="run"))
        await until(lambda: publisher.connected, what="the publisher sees Redis answer")
    finally:
        await publisher.close()
    with redis.Redis(port=private_redis.port) as check:
        written = [decode(fields[b"data"]) for _, fields in check.xrange("out")]
    numbers = [m.metadata["n"] for m in written if isinstance(m, Event)]
    assert numbers in ([1, 3], [1, 2, 3])  # the unconfirmed one may have been written


async def test_the_late_reply_of_a_pipeline_cut_short_is_never_read_as_the_next_ones(
    private_redis: PrivateRedis, until: Until
) -> None:
    await until(private_redis.answers, what="the private redis-server answers")
    assert private_redis.process is not None
    check = redis.Redis(port=private_redis.port)
    publisher = open_publisher(f"redis://{private_redis.address}/out", {"timeout": 0.5})
    await publisher.start()
    try:
        await publisher.send(Event({"n": 1}, b"x", stream="run"))
        check.delete("out")
        check.set("out", b"not a stream")  # the next XADD's reply will be WRONGTYPE
        os.kill(private_redis.process.pid, signal.SIGSTOP)
        with pytest.raises(PublishError, match="not confirmed"):
            await asyncio.wait_for(publisher.send(Event({"n": 2}, b"x", stream="run")), 10)
        os.kill(private_redis.process.pid, signal.SIGCONT)

        def refused_once() -> bool:
            stats = check.info("commandstats").get("cmdstat_xadd", {})
            return int(stats.get("failed_calls", 0)) >= 1

        await until(refused_once, what="Redis refused the XADD that was cut short")
        check.delete("out")
        # On the connection that was cut short, WRONGTYPE would be read as this reply.
        await asyncio.wait_for(publisher.send(Event({"n": 3}, b"x", stream="run")), 10)
    finally:
        await publisher.close()
        written = [decode(fields[b"data"]) for _, fields in check.xrange("out")]
        check.close()
    assert [m.metadata["n"] for m in written if isinstance(m, Event)] == [3]
