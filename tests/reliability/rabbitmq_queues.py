"""Filling a RabbitMQ queue, reading one in the background and counting what waits in
one, for the reliability tests of RabbitMQ workers (recovery, quorum queues)."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika

from arroyo import encode
from arroyo.message import Message


async def produce(amqp_url: str, queue: str, messages: list[Message], **arguments: Any) -> None:
    """Publish encoded messages, persistent and confirmed, as Arroyo's publisher does."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True, arguments=arguments or None)
        for first in range(0, len(messages), 500):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(
                            encode(m),
                            message_id=m.id,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        queue,
                    )
                    for m in messages[first : first + 500]
                )
            )


class Sink:
    """Consumes a queue in the background and keeps the message ids it received."""

    def __init__(self, amqp_url: str, queue: str) -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.ids: list[str] = []
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_url, reconnect_interval=0.5)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.declare_queue(self.queue, durable=True)

        async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            self.ids.append(str(message.message_id))
            await message.ack()

        await queue.consume(keep)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    def read(self) -> set[str]:
        return set(self.ids)


async def ready(amqp_url: str, queue: str) -> int | None:
    """Messages ready in ``queue`` (None while the broker does not answer)."""
    try:
        connection = await aio_pika.connect(amqp_url, timeout=2)
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPError):
        return None
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0  # not declared yet
        return declared.declaration_result.message_count
