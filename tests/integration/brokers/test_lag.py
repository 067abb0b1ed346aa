"""``arroyo_lag_messages`` and ``arroyo_connected`` against the real brokers.

N messages are published; a Block's operator lets M through (acknowledged) and holds the
next one. The lag then reads what the group has not acknowledged, N - M (Kafka: the log
end minus the committed offset; Redis Streams: never delivered plus pending; RabbitMQ:
the ready messages plus the held one, delivered to the listener and not acknowledged).
Once the operator is let go, the lag reads 0. The listener and the Block's
publisher read connected (1) while the Block runs, 0 once it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.runtime import Block
from arroyo.runtime.operator import Operator
from arroyo.testing import make_run

N = 10  # a run of 8 events: Start, 8 Events, Stop
M = 4


class _LetThrough(Operator):
    """Lets ``count`` messages through (publishing nothing), then holds each until
    ``gate`` is set."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.gate = asyncio.Event()

    async def process(self, message: Message) -> None:
        self.seen += 1
        if self.seen > self.count:
            await self.gate.wait()


def _urls(
    broker: str, request: pytest.FixtureRequest, name: str
) -> tuple[str, str, dict[str, str]]:
    """(listener URL, publisher URL, the lag's source labels) of ``broker``."""
    if broker == "kafka":
        host = request.getfixturevalue("kafka_bootstrap")
        url = f"kafka://{host}/{name}"
        return f"{url}?group={name}", url, {"topic": name, "partition": "0"}
    if broker == "redis":
        host = request.getfixturevalue("redis_address")
        url = f"redis://{host}/{name}"
        return f"{url}?group={name}", url, {"stream": name, "group": name}
    base = request.getfixturevalue("amqp_url").rstrip("/")
    return f"{base}/?queue={name}&prefetch=1", f"{base}/?queue={name}", {"queue": name}


@pytest.mark.parametrize("broker", ["kafka", "redis", "rabbitmq"])
async def test_the_lag_reads_what_is_not_consumed_then_zero(
    broker: str,
    request: pytest.FixtureRequest,
    unique_name: Callable[[str], str],
    deleted_after: Callable[[str, str], str],
    until: Callable[..., Any],
) -> None:
    name, block_name = deleted_after(broker, unique_name(broker)), unique_name("block")
    listen, publish, labels = _urls(broker, request, name)
    listener = open_listener(listen)
    if broker == "rabbitmq":
        await listener.connect()  # declares the queue, so what is published stays
    publisher = open_publisher(publish)
    await publisher.start()
    try:
        for message in make_run(N - 2):
            await publisher.publish(message)
    finally:
        await publisher.close()
    operator = _LetThrough(M)
    results_name = deleted_after(broker, unique_name("results"))
    results = open_publisher(_urls(broker, request, results_name)[1])
    block = Block(listener, operator, [results], name=block_name, lag_interval=0.2)

    def lag() -> float | None:
        return REGISTRY.get_sample_value("arroyo_lag_messages", {"block": block_name, **labels})

    def connected(role: str = "listener") -> float | None:
        part = listener if role == "listener" else results
        where = {"block": block_name, "role": role, "connector": part.name}
        return REGISTRY.get_sample_value("arroyo_connected", where)

    behind = N - M
    running = asyncio.create_task(block.run())
    try:
        await until(lambda: connected() == 1, within=30, what="the listener connected")
        assert connected("publisher") == 1
        await until(lambda: operator.seen == M + 1, within=30, what=f"{M} let through")
        await until(lambda: lag() == behind, within=30, what=f"lag {behind}")
        operator.gate.set()
        await until(lambda: block.stats.acknowledged == N, within=30, what="all acknowledged")
        await until(lambda: lag() == 0, within=30, what="lag 0")
    finally:
        operator.gate.set()
        block.stop()
        await running
    assert connected() == 0
    assert connected("publisher") == 0
    assert lag() is None
