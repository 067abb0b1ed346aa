"""A message that kills its worker by a signal (as a segfault in compiled code does) is
dead-lettered after ``max_deliveries`` on Kafka, Redis Streams and RabbitMQ, and every
other message is delivered.

Each test starts an ``arroyo run`` worker whose operator sends itself SIGSEGV on one
marked Event, placed in the middle of a stream that is already waiting when the worker
starts (so its neighbours are in flight with it each time). The test restarts the worker
each time it dies, as a supervisor would, a bounded number of times: the first
``max_deliveries`` workers die on the poison, the next one dead-letters it, saying it
was delivered ``max_deliveries + 1`` times and kept crashing workers.

Kafka keeps no delivery count: there, the listener's delivery journal (a folder shared
by the workers of a machine) counts the deliveries that killed a worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from arroyo import Run, decode, encode
from arroyo.message import Message
from arroyo.testing import Workers

MAX_DELIVERIES = 3
WORKERS_AT_MOST = MAX_DELIVERIES + 3
"""The test gives up (and fails) when this many workers died on the poison."""

SEGFAULT_ON_POISON = '''
import os
import signal

from arroyo import Event
from arroyo.runtime import Operator


class SegfaultOnPoison(Operator):
    """Kills the worker with SIGSEGV on an Event marked poison, as a crash in compiled
    code does; passes everything else on."""

    async def process(self, message):
        if isinstance(message, Event) and message.metadata.get("poison"):
            os.kill(os.getpid(), signal.SIGSEGV)
        return message
'''


def stream_with_poison() -> tuple[list[Message], Message]:
    """Three runs of 20 Events, interleaved; the poison is the 11th Event of the second
    run. Returns (every message in the order produced, the poison)."""
    runs = [Run(f"scan-{i}") for i in range(3)]
    messages: list[Message] = []
    poison: Message | None = None
    for i in range(20):
        for r, run in enumerate(runs):
            if r == 1 and i == 10:
                poison = run.event({"i": i, "poison": True}, b"frame that kills")
                messages.append(poison)
            else:
                messages.append(run.event({"i": i}, b"frame %d" % i))
    assert poison is not None
    return messages, poison


class Broker(ABC):
    """One broker's side of the test: the pipeline config, the source, sink and dead
    letter destinations."""

    @abstractmethod
    def listener(self) -> str:
        """The listener block of the config (YAML, indented for a block)."""

    @abstractmethod
    def publisher(self) -> str:
        """The URL of the sink."""

    @abstractmethod
    def dead_letter(self) -> str:
        """The URL of the dead-letter destination."""

    @abstractmethod
    async def produce(self, messages: list[Message]) -> None:
        """Put ``messages`` in the source, in order."""

    @abstractmethod
    async def sink(self) -> set[str]:
        """The ids of the messages at the sink so far."""

    @abstractmethod
    async def letters(self) -> list[tuple[bytes, str]]:
        """The dead letters so far: (original bytes, reason)."""

    def config(self, folder: Path, operator: str) -> Path:
        path = folder / "pipeline.yaml"
        path.write_text(
            "blocks:\n  - name: workers\n"
            + textwrap.indent(
                textwrap.dedent(self.listener()).strip() + "\n"
                f"operator: {operator}\n"
                f"publishers:\n  - {self.publisher()}\n"
                f"dead_letter: {self.dead_letter()}\n"
                f"max_deliveries: {MAX_DELIVERIES}\n"
                "grace_period: 10\n",
                "    ",
            )
        )
        return path


class Kafka(Broker):
    def __init__(self, bootstrap: str, topics: Any) -> None:
        import confluent_kafka as ck

        self.ck = ck
        self.bootstrap = bootstrap
        self.source, self.out, self.dlq = topics("in", 3), topics("out", 3), topics("dlq")
        self._readers: dict[str, Any] = {}
        self._records: dict[str, list[Any]] = {self.out: [], self.dlq: []}

    def listener(self) -> str:
        return f"""
            listener:
              url: kafka://{self.bootstrap}/{self.source}?group={self.source}-g
              session.timeout.ms: 6000
              heartbeat.interval.ms: 500
            """

    def publisher(self) -> str:
        return f"kafka://{self.bootstrap}/{self.out}"

    def dead_letter(self) -> str:
        return f"kafka://{self.bootstrap}/{self.dlq}"

    async def produce(self, messages: list[Message]) -> None:
        producer = self.ck.Producer({"bootstrap.servers": self.bootstrap})
        for message in messages:
            producer.produce(self.source, encode(message), key=message.stream.encode())
        assert producer.flush(30) == 0

    def _read(self, topic: str) -> list[Any]:
        reader = self._readers.get(topic)
        if reader is None:
            reader = self._readers[topic] = self.ck.Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"check-{topic}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": "false",
                }
            )
            reader.subscribe([topic])
        for record in reader.consume(1000, 0.2):
            if record.error() is None:
                self._records[topic].append(record)
        return self._records[topic]

    async def sink(self) -> set[str]:
        return {decode(r.value()).id for r in await asyncio.to_thread(self._read, self.out)}

    async def letters(self) -> list[tuple[bytes, str]]:
        found = []
        for record in await asyncio.to_thread(self._read, self.dlq):
            headers = dict(record.headers())
            found.append((record.value(), headers["arroyo.dead-letter.reason"].decode()))
        return found

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()


class RedisStreams(Broker):
    def __init__(self, address: str, client: Any, names: dict[str, str]) -> None:
        self.address, self.client, self.names = address, client, names

    def listener(self) -> str:
        return f"""
            listener:
              url: redis://{self.address}/{self.names["source"]}?group=workers
              min_idle_ms: 1000
              claim_interval_ms: 200
              block_ms: 100
            """

    def publisher(self) -> str:
        return f"redis://{self.address}/{self.names['sink']}"

    def dead_letter(self) -> str:
        return f"redis://{self.address}/{self.names['dlq']}"

    async def produce(self, messages: list[Message]) -> None:
        for message in messages:
            self.client.xadd(self.names["source"], {"id": message.id, "data": encode(message)})

    async def sink(self) -> set[str]:
        return {f[b"id"].decode() for _, f in self.client.xrange(self.names["sink"])}

    async def letters(self) -> list[tuple[bytes, str]]:
        return [
            (f[b"data"], f[b"arroyo.dead-letter.reason"].decode())
            for _, f in self.client.xrange(self.names["dlq"])
        ]


class RabbitMQ(Broker):
    """A quorum queue (classic queues keep no delivery count)."""

    def __init__(self, url: str, names: dict[str, str]) -> None:
        self.url, self.names = url, names
        self.seen: set[str] = set()
        self.dead: list[tuple[bytes, str]] = []
        self._connection: Any = None

    async def start(self) -> None:
        import aio_pika

        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        queues = {}
        for tag in ("source", "sink", "dlq"):
            arguments = {"x-queue-type": "quorum"} if tag == "source" else None
            queues[tag] = await channel.declare_queue(
                self.names[tag], durable=True, arguments=arguments
            )

        async def keep(message: Any) -> None:
            self.seen.add(str(message.message_id))
            await message.ack()

        async def keep_letter(message: Any) -> None:
            reason = str(message.headers["arroyo.dead-letter.reason"])
            self.dead.append((message.body, reason))
            await message.ack()

        await queues["sink"].consume(keep)
        await queues["dlq"].consume(keep_letter)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    def listener(self) -> str:
        return f"""
            listener:
              url: {self.url}?queue={self.names["source"]}
              queue_type: quorum
            """

    def publisher(self) -> str:
        return f"{self.url}?queue={self.names['sink']}"

    def dead_letter(self) -> str:
        return f"{self.url}?queue={self.names['dlq']}"

    async def produce(self, messages: list[Message]) -> None:
        import aio_pika

        channel = await self._connection.channel(publisher_confirms=True)
        for message in messages:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    encode(message),
                    message_id=message.id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                self.names["source"],
            )
        await channel.close()

    async def sink(self) -> set[str]:
        return set(self.seen)

    async def letters(self) -> list[tuple[bytes, str]]:
        return list(self.dead)


@pytest.fixture
async def kafka(kafka_bootstrap: str, kafka_topics: Any) -> AsyncIterator[Kafka]:
    broker = Kafka(kafka_bootstrap, kafka_topics)
    yield broker
    broker.close()


@pytest.fixture
async def redis(redis_address: str, redis_client: Any, redis_names: dict[str, str]) -> RedisStreams:
    return RedisStreams(redis_address, redis_client, redis_names)


@pytest.fixture
async def rabbitmq(amqp_url: str, amqp_names: dict[str, str]) -> AsyncIterator[RabbitMQ]:
    broker = RabbitMQ(amqp_url, amqp_names)
    await broker.start()
    yield broker
    await broker.close()


async def until_async(condition: Callable[[], Any], within: float, what: str) -> None:
    """Poll the coroutine function ``condition`` until it returns true; fail after
    ``within`` seconds, naming ``what``."""
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {within} s: {what}")
        await asyncio.sleep(0.05)


async def dead_lettered_after_max_deliveries(
    broker: Broker, tmp_path: Path, workers: Workers
) -> None:
    """The scenario of the module docstring, on ``broker``."""
    (tmp_path / "ops.py").write_text(SEGFAULT_ON_POISON)
    config = broker.config(tmp_path, "ops:SegfaultOnPoison")
    # The workers' state folder (where the delivery journal lives) is the test's own.
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    messages, poison = stream_with_poison()
    good = {m.id for m in messages if m is not poison}
    await broker.produce(messages)

    crashes: list[int] = []
    worker = workers.start(config, env=env)
    while True:

        async def ended_or_dead_lettered(worker: Any = worker) -> bool:
            return worker.poll() is not None or bool(await broker.letters())

        await until_async(ended_or_dead_lettered, within=60, what="a crash or the dead letter")
        if worker.poll() is None:
            break
        crashes.append(worker.returncode)
        assert len(crashes) < WORKERS_AT_MOST, (
            f"{len(crashes)} workers died and the poison is not dead-lettered yet; the last "
            f"one's log:\n{workers.log(worker)[-3000:]}"
        )
        worker = workers.start(config, env=env)
    assert crashes == [-signal.SIGSEGV] * MAX_DELIVERIES, workers.log(worker)[-3000:]

    async def everything_else_delivered() -> bool:
        return await broker.sink() >= good

    await until_async(everything_else_delivered, within=60, what="every good message at the sink")
    assert workers.stop(worker) == 0, workers.log(worker)[-3000:]
    [(data, reason)] = await broker.letters()
    assert data == encode(poison)
    assert f"delivered {MAX_DELIVERIES + 1} times" in reason, reason
    assert "crashing workers" in reason, reason
    assert poison.id not in await broker.sink()


class TestAMessageThatKillsItsWorkerBySignalIsDeadLetteredAfterMaxDeliveries:
    @pytest.mark.kafka
    async def test_kafka(self, kafka: Kafka, tmp_path: Path, workers: Workers) -> None:
        await dead_lettered_after_max_deliveries(kafka, tmp_path, workers)

    @pytest.mark.redis
    async def test_redis_streams(
        self, redis: RedisStreams, tmp_path: Path, workers: Workers
    ) -> None:
        await dead_lettered_after_max_deliveries(redis, tmp_path, workers)

    @pytest.mark.rabbitmq
    async def test_rabbitmq(self, rabbitmq: RabbitMQ, tmp_path: Path, workers: Workers) -> None:
        await dead_lettered_after_max_deliveries(rabbitmq, tmp_path, workers)
