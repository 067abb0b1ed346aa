"""The network between a pipeline and its broker breaks for 30 s mid-stream: the pipeline
waits, resumes by itself, loses nothing, and its metrics and logs say it was
disconnected.

A TCP proxy the test controls (tests/tcp_proxy.py) stands between a Block
and Redis: the listener reads a stream and the publisher writes another through it. The
proxy drops every connection and refuses new ones for ``OUTAGE`` seconds, then lets
them through again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from arroyo import Run
from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output
from tests.reliability.redis_pipelines import produce
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis

OUTAGE = 30.0
"""Seconds the network stays broken."""

COUNT = 1500


class Paced(Operator):
    """Passes each message on after a few milliseconds of work, so that the stream is
    still flowing when the network breaks."""

    async def process(self, message: Message) -> Output:
        await asyncio.sleep(0.003)
        return message


def sink_ids(client: redis.Redis, stream: str) -> list[str]:
    return [fields[b"id"].decode() for _, fields in client.xrange(stream)]


async def test_a_30_s_network_outage_mid_stream_loses_nothing(
    redis_address: str,
    redis_client: redis.Redis,
    redis_names: dict[str, str],
    unique_name: Callable[[str], str],
    until: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    host, port = redis_address.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    await proxy.open()
    run = Run("scan-outage")
    messages = [run.event({"i": i}, os.urandom(64)) for i in range(COUNT)]
    produce(redis_client, redis_names["source"], messages)
    listener = open_listener(f"redis://{proxy.address}/{redis_names['source']}?group=workers")
    publisher = open_publisher(f"redis://{proxy.address}/{redis_names['sink']}")
    name = unique_name("block")
    block = Block(listener, Paced(), [publisher], name=name, lag_interval=0.2)

    def connected(role: str = "listener") -> float | None:
        part = listener if role == "listener" else publisher
        where = {"block": name, "role": role, "connector": part.name}
        return REGISTRY.get_sample_value("arroyo_connected", where)

    caplog.set_level(logging.INFO, logger="arroyo")
    running = asyncio.create_task(block.run())
    try:
        await until(lambda: connected() == 1, within=30, what="the listener connected")
        await until(
            lambda: len(sink_ids(redis_client, redis_names["sink"])) >= 300,
            within=60,
            what="300 results through the proxy",
        )
        await proxy.cut()
        cut = time.monotonic()
        before = len(sink_ids(redis_client, redis_names["sink"]))
        # The publisher's next publish fails at once; the listener may be waiting for room
        # in the Block (nothing can be acknowledged) and not read until the network is back.
        await until(
            lambda: connected("publisher") == 0, within=OUTAGE - 5, what="arroyo_connected 0"
        )
        noticed = time.monotonic() - cut
        await asyncio.sleep(OUTAGE - (time.monotonic() - cut))  # the outage lasts OUTAGE s
        assert not running.done(), "the Block gave up during the outage"
        assert len(sink_ids(redis_client, redis_names["sink"])) == before  # nothing got out
        await proxy.restore()
        back = time.monotonic()
        await until(
            lambda: len(sink_ids(redis_client, redis_names["sink"])) > before,
            within=30,
            what="results after the network is back",
        )
        resumed = time.monotonic() - back
        await until(
            lambda: len(set(sink_ids(redis_client, redis_names["sink"]))) >= COUNT,
            within=60,
            what="every message at the sink",
        )
        await until(
            lambda: connected() == connected("publisher") == 1,
            within=10,
            what="arroyo_connected 1 again",
        )
    finally:
        block.stop()
        await asyncio.wait_for(running, 60)
        await proxy.close()
    got = sink_ids(redis_client, redis_names["sink"])
    assert set(got) == {m.id for m in messages}
    assert block.stats.dead_lettered == 0
    logged = caplog.text
    assert "publish failed (attempt 1), retrying" in logged, logged[-3000:]
    assert f"publisher {publisher.name} works again" in logged, logged[-3000:]
    assert f"block {name}: publisher {publisher.name} is not connected" in logged
    assert f"block {name}: publisher {publisher.name} is connected again" in logged
    print(
        f"network cut for {OUTAGE:.0f} s after {before} of {COUNT} results: lost=0 "
        f"duplicates={len(got) - len(set(got))}; disconnection in the metrics after "
        f"{noticed:.1f} s; results again {resumed:.1f} s after the network came back"
    )
