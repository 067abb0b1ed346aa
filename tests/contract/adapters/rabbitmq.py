"""RabbitMQ, reached with aio-pika (durable queues, persistent messages, confirms)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from arroyo.testing import free_port
from tests.contract.adapters.base import Broker, Refusal, client_certificate, tls_address
from tests.contract.brokers import Declared


class RabbitMQ(Broker):
    def __init__(self, declared: Declared, unique_name: Callable[[str], str], url: str) -> None:
        super().__init__(declared, unique_name)
        self.url = url
        self._connection: Any = None

    async def _channel(self) -> Any:
        import aio_pika

        if self._connection is None:
            self._connection = await aio_pika.connect(self.url)
        return await self._connection.channel(publisher_confirms=True)

    async def _make(self, name: str, partitions: int) -> None:
        channel = await self._channel()
        await channel.declare_queue(name, durable=True)
        await channel.close()

    def listener_url(self, source: str, group: str) -> str:
        return f"{self.url}?queue={source}"  # a queue is its own consumer group

    def publisher_url(self, name: str) -> str:
        return f"{self.url}?queue={name}"

    async def write(self, source: str, data: Sequence[bytes]) -> list[str]:
        import aio_pika

        channel = await self._channel()
        ids = [uuid.uuid4().hex for _ in data]
        for item, message_id in zip(data, ids, strict=True):
            message = aio_pika.Message(
                item, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            await channel.default_exchange.publish(message, routing_key=source)
        await channel.close()
        return ids

    def where(self, headers: dict[str, str]) -> str:
        return headers["arroyo.source.message_id"]

    async def _fetch(self, destination: str) -> list[tuple[bytes, dict[str, str]]]:
        channel = await self._channel()
        queue = await channel.declare_queue(destination, durable=True, passive=True)
        got = []
        while (message := await queue.get(fail=False)) is not None:
            await message.ack()
            headers = {key: str(value) for key, value in (message.headers or {}).items()}
            got.append((message.body, headers))
        await channel.close()
        return got

    async def close(self) -> None:
        if self.made:
            channel = await self._channel()
            for name in self.made:
                await channel.queue_delete(name)
        if self._connection is not None:
            await self._connection.close()

    def refusing(self, source: str, secret: str) -> list[Refusal]:
        parts = urlsplit(self.url)
        at = f"{parts.hostname}:{parts.port}"
        wrong = f"amqp://guest:{secret}@{at}/?queue={source}"
        plain = f"amqp://guest@{at}/?queue={source}"
        closed = f"amqp://guest:{secret}@127.0.0.1:{free_port()}/?queue={source}"
        quick = {"connect_timeout": 2}
        refused = "ACCESS_REFUSED"
        return [
            Refusal(wrong, wrong, quick, refused),
            Refusal(plain, plain, {"password": secret, **quick}, refused),
            Refusal(closed, closed, quick, "connection refused"),
        ]

    def tls(self, source: str, group: str, ca: str) -> tuple[str, str, dict[str, Any]]:
        url = tls_address("ARROYO_AMQPS")
        return (
            f"{url}?queue={source}",
            f"{url}?queue={source}",
            {"ssl_ca": ca, **client_certificate()},
        )
