"""The Kafka listener's lag per assigned partition: one ``arroyo_lag_messages`` sample
per partition (labels ``topic`` and ``partition``), the log end offset minus the group's
committed offset."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from arroyo import Run, encode
from arroyo.brokers import open_listener
from arroyo.message import Message
from arroyo.runtime import Block, Operator

ck = pytest.importorskip("confluent_kafka")

PLACED = {0: 6, 1: 4}  # messages per partition
LET_THROUGH = 3


class _LetThrough(Operator):
    def __init__(self) -> None:
        self.seen = 0
        self.gate = asyncio.Event()

    async def process(self, message: Message) -> None:
        self.seen += 1
        if self.seen > LET_THROUGH:
            await self.gate.wait()


async def test_each_assigned_partition_has_its_lag(
    kafka_bootstrap: str,
    kafka_topics: Any,
    unique_name: Callable[[str], str],
    until: Callable[..., Any],
) -> None:
    name, block_name = kafka_topics("lag", partitions=2), unique_name("block")
    producer = ck.Producer({"bootstrap.servers": kafka_bootstrap})
    for partition, count in PLACED.items():
        for i in range(count):
            producer.produce(
                name, encode(Run(f"p{partition}").event({"i": i})), partition=partition
            )
    assert producer.flush(10) == 0
    operator = _LetThrough()
    listener = open_listener(f"kafka://{kafka_bootstrap}/{name}?group={name}-g")
    block = Block(listener, operator, name=block_name, lag_interval=0.2)

    def lags() -> dict[int, float | None]:
        return {
            p: REGISTRY.get_sample_value(
                "arroyo_lag_messages", {"block": block_name, "topic": name, "partition": str(p)}
            )
            for p in PLACED
        }

    def behind() -> float | None:
        values = [v for v in lags().values() if v is not None]
        return sum(values) if len(values) == len(PLACED) else None

    total = sum(PLACED.values())
    running = asyncio.create_task(block.run())
    try:
        await until(lambda: operator.seen == LET_THROUGH + 1, within=30, what="3 let through")
        await until(
            lambda: behind() == total - LET_THROUGH,
            within=30,
            what=f"lag {total - LET_THROUGH} over both partitions",
        )
        operator.gate.set()
        await until(lambda: lags() == {0: 0, 1: 0}, within=30, what="lag 0 on both partitions")
    finally:
        operator.gate.set()
        block.stop()
        await running
