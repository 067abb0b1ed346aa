"""Kafka, reached with confluent-kafka (its admin client, a producer, consumers)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from arroyo.testing import free_port
from tests.contract.adapters.base import Broker, Refusal, tls_address
from tests.contract.brokers import Declared


class Kafka(Broker):
    def __init__(
        self, declared: Declared, unique_name: Callable[[str], str], bootstrap: str
    ) -> None:
        from confluent_kafka.admin import AdminClient

        super().__init__(declared, unique_name)
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self._consumers: dict[str, Any] = {}

    async def _make(self, name: str, partitions: int) -> None:
        from confluent_kafka.admin import NewTopic

        for future in self.admin.create_topics([NewTopic(name, partitions, 1)]).values():
            await asyncio.to_thread(future.result, 30)

    def listener_url(self, source: str, group: str) -> str:
        return f"kafka://{self.bootstrap}/{source}?group={group}"

    def publisher_url(self, name: str) -> str:
        return f"kafka://{self.bootstrap}/{name}"

    def worker_options(self) -> dict[str, Any]:
        return {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}

    async def write(self, source: str, data: Sequence[bytes]) -> list[str]:
        from confluent_kafka import Producer

        def produce() -> list[str]:
            producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
            where: list[str] = [""] * len(data)
            for index, item in enumerate(data):

                def report(err: Any, msg: Any, index: int = index) -> None:
                    assert err is None, err
                    where[index] = f"{msg.partition()}:{msg.offset()}"

                producer.produce(source, item, on_delivery=report)
                producer.poll(0)
            assert producer.flush(30) == 0
            return where

        return await asyncio.to_thread(produce)

    def where(self, headers: dict[str, str]) -> str:
        return f"{headers['arroyo.source.partition']}:{headers['arroyo.source.offset']}"

    async def _fetch(self, destination: str) -> list[tuple[bytes, dict[str, str]]]:
        from confluent_kafka import Consumer

        consumer = self._consumers.get(destination)
        if consumer is None:
            consumer = self._consumers[destination] = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"check-{destination}-{uuid.uuid4().hex[:8]}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": "false",
                    "isolation.level": "read_committed",
                }
            )
            consumer.subscribe([destination])
        records = await asyncio.to_thread(consumer.consume, 10000, 0.2)
        got = []
        for record in records:
            assert record.error() is None, f"{destination}: {record.error()}"
            headers = {key: value.decode() for key, value in record.headers() or []}
            got.append((record.value() or b"", headers))
        return got

    async def close(self) -> None:
        for consumer in self._consumers.values():
            await asyncio.to_thread(consumer.close)
        if self.made:
            for future in self.admin.delete_topics(self.made).values():
                with contextlib.suppress(Exception):  # best effort
                    await asyncio.to_thread(future.result, 30)

    def refusing(self, source: str, secret: str) -> list[Refusal]:
        # The test cluster has no SASL listener: it refuses every SASL login.
        sasl = {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "arroyo",
            "connect_timeout": 2,
        }
        query = "&".join(f"{key}={value}" for key, value in sasl.items())
        query += f"&sasl.password={secret}"
        listener, publisher = self.listener_url(source, "g"), self.publisher_url(source)
        closed = f"kafka://127.0.0.1:{free_port()}/{source}"
        refused = "SASL PLAIN mechanism handshake failed"
        return [
            Refusal(f"{listener}&{query}", f"{publisher}?{query}", {}, refused),
            Refusal(listener, publisher, {**sasl, "sasl.password": secret}, refused),
            Refusal(f"{closed}?group=g&{query}", f"{closed}?{query}", {}, "connection refused"),
        ]

    def tls(self, source: str, group: str, ca: str) -> tuple[str, str, dict[str, Any]]:
        address = tls_address("ARROYO_KAFKA_TLS")
        options = {"security.protocol": "SSL", "ssl_ca": ca, **self.worker_options()}
        return (
            f"kafka://{address}/{source}?group={group}",
            f"kafka://{address}/{source}",
            options,
        )
