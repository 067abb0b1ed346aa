"""Batches, on every broker that delivers them (see brokers.py for who meets what).

- What the broker delivered together and waits in the listener (a Kafka ``consume``, a
  Redis ``XREADGROUP``, RabbitMQ's prefetch window, what a ZeroMQ socket holds) is
  handed to the Block together, in one ``offer_many``, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from arroyo import decode
from arroyo.brokers import open_listener
from arroyo.runtime.listener import Received
from arroyo.testing import Collect, make_run, publish_all
from tests.contract.adapters import Broker
from tests.contract.harness import WITHIN, until


class Gated(Collect):
    """An intake that is full until :meth:`open`, then never; ``offered`` holds how
    many messages each ``offer_many`` took, ``puts`` counts the puts."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()
        self.offered: list[int] = []
        self.puts = 0

    def open(self) -> None:
        self.opened.set()

    async def put(self, received: Received) -> None:
        await self.opened.wait()
        self.puts += 1
        await super().put(received)

    def offer(self, received: Received) -> bool:
        return self.offer_many((received,)) == 1

    def offer_many(self, items: Sequence[Received]) -> int:
        if not self.opened.is_set() or not items:
            return 0
        self.offered.append(len(items))
        return super().offer_many(items)

    def full(self) -> bool:
        return not self.opened.is_set()


class TestBatches:
    concern = "batches"

    async def test_what_waits_together_is_handed_over_together(
        self, broker: Broker, unique_name: Callable[[str], str]
    ) -> None:
        source = await broker.source()
        sent = make_run(200)
        listener = open_listener(broker.listener_url(source, unique_name("group")))
        intake = Gated()
        task = asyncio.create_task(listener.start(intake))
        try:
            # The Block is full while everything is sent: it waits in the listener (or,
            # for ZeroMQ, in its socket) and is taken together once there is room.
            await asyncio.wait_for(publish_all(broker.publisher_url(source), sent), WITHIN)
            intake.open()
            await until(lambda: len(intake.items) >= len(sent), f"{len(sent)} handed over")
        finally:
            await listener.stop()
            await asyncio.wait_for(task, WITHIN)
            await listener.close()
        assert [decode(received.data) for received in intake.items] == sent
        assert max(intake.offered) > 1, f"one by one: {intake.offered}, {intake.puts} puts"
        assert len(intake.offered) + intake.puts < len(sent) / 2
