"""The test harness: real broker addresses, names that are unique per test, worker
processes, Kafka topics to create and read, and each broker with acknowledgements as the
fuzz tests reach it (``broker``).

A broker's address comes from the environment (``ARROYO_KAFKA``, ``ARROYO_REDIS``,
``ARROYO_AMQP``, as printed by ``compose/brokers.sh up``); without it, from a
testcontainers container when a Docker engine answers. When neither gives a broker that
answers, a test that needs it fails under ``CI=true`` and is skipped elsewhere, with a
message naming the broker.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from arroyo.testing import Workers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_HOW = (
    'start the brokers with `eval "$(compose/brokers.sh up)"` (or run ./test.sh), '
    "or start a Docker engine for testcontainers"
)


def _answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


class _Brokers:
    """Finds each broker once per session; owns the containers it started."""

    def __init__(self) -> None:
        self._found: dict[str, str | None] = {}
        self._stack = contextlib.ExitStack()

    def close(self) -> None:
        self._stack.close()

    def address(self, broker: str) -> str | None:
        if broker not in self._found:
            self._found[broker] = self._from_env(broker) or self._from_docker(broker)
        return self._found[broker]

    @staticmethod
    def _from_env(broker: str) -> str | None:
        value = os.environ.get(_ENV[broker])
        if not value:
            return None
        # (A Kafka cluster's ARROYO_KAFKA lists its brokers: h1:p1,h2:p2; the first answers.)
        first = value.split(",")[0]
        parts = urlsplit(first if "://" in first else f"tcp://{first}")
        host, port = parts.hostname or "127.0.0.1", parts.port or _DEFAULT_PORT[broker]
        return value if _answers(host, port) else None

    def _from_docker(self, broker: str) -> str | None:
        if not _docker_answers():
            return None
        if broker == "kafka":
            from testcontainers.kafka import KafkaContainer

            kafka = self._stack.enter_context(KafkaContainer().with_kraft())
            return str(kafka.get_bootstrap_server())
        if broker == "redis":
            from testcontainers.redis import RedisContainer

            redis = self._stack.enter_context(RedisContainer("redis:7"))
            return f"{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}"
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        if broker == "registry":
            image = DockerContainer("apicurio/apicurio-registry:3.0.9").with_exposed_ports(8080)
            registry = self._stack.enter_context(image)
            wait_for_logs(registry, "Installed features", timeout=120)
            host, port = registry.get_container_host_ip(), registry.get_exposed_port(8080)
            return f"http://{host}:{port}/apis/ccompat/v7"
        container = DockerContainer("rabbitmq:3.13").with_exposed_ports(5672)
        rabbit = self._stack.enter_context(container)
        wait_for_logs(rabbit, "Server startup complete", timeout=120)
        host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
        return f"amqp://guest:guest@{host}:{port}/"


_ENV = {
    "kafka": "ARROYO_KAFKA",
    "redis": "ARROYO_REDIS",
    "rabbitmq": "ARROYO_AMQP",
    "registry": "ARROYO_REGISTRY",
}
_DEFAULT_PORT = {"kafka": 9092, "redis": 6379, "rabbitmq": 5672, "registry": 8081}


@pytest.fixture(scope="session")
def _brokers() -> Iterator[_Brokers]:
    brokers = _Brokers()
    yield brokers
    brokers.close()


def _need(brokers: _Brokers, broker: str) -> str:
    address = brokers.address(broker)
    if address is None:
        message = f"{broker} is not available: ${_ENV[broker]} is unset or does not answer; {_HOW}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return address


@pytest.fixture
def kafka_bootstrap(_brokers: _Brokers) -> str:
    """``host:port`` of a real Kafka broker."""
    return _need(_brokers, "kafka")


@pytest.fixture
def redis_address(_brokers: _Brokers) -> str:
    """``host:port`` of a real Redis server."""
    return _need(_brokers, "redis")


@pytest.fixture
def amqp_url(_brokers: _Brokers) -> str:
    """``amqp://user:pass@host:port/`` of a real RabbitMQ broker."""
    return _need(_brokers, "rabbitmq")


@pytest.fixture
def registry_url(_brokers: _Brokers) -> str:
    """URL of a real schema registry's Confluent API (Apicurio ``/apis/ccompat/v7``)."""
    return _need(_brokers, "registry")


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make names (topic, stream, queue) no other test or run uses: ``t-<test>-<tag>-<hex>``."""
    test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]

    def make(tag: str = "") -> str:
        return "-".join(p for p in ("t", test, tag, uuid.uuid4().hex[:8]) if p)

    return make


async def _until(condition: Callable[[], object], within: float = 10.0, what: str = "") -> None:
    import asyncio
    import time

    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s: {what or condition}")
        await asyncio.sleep(0.001)


@pytest.fixture
def until() -> Callable[..., Any]:
    """``await until(condition, within=10, what="...")``: poll with a deadline."""
    return _until


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """``arroyo run`` worker processes (:class:`arroyo.testing.Workers`) with their logs in
    ``tmp_path``; those still running at the end of the test are killed."""
    running = Workers(tmp_path)
    yield running
    running.kill_all()


# -- Kafka (confluent_kafka is imported only by the tests that use these) ---------------


class _KafkaTopics:
    """Creates topics on one cluster and deletes them all at the end of the test."""

    def __init__(self, bootstrap: str, unique_name: Callable[[str], str]) -> None:
        from confluent_kafka.admin import AdminClient

        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._unique_name = unique_name
        self.made: list[str] = []

    def __call__(self, tag: str = "", partitions: int = 1, **config: str) -> str:
        """Create a topic named for this test and ``tag``; its name."""
        name = self._unique_name(tag)
        self.create(name, partitions=partitions, **config)
        return name

    def create(self, *names: str, partitions: int = 1, **config: str) -> None:
        """Create topics with exactly these names (topic settings in ``config``)."""
        from confluent_kafka.admin import NewTopic

        new = [NewTopic(name, partitions, 1, config=config) for name in names]
        self.made += names  # deleted at the end even when creating one of them fails
        for future in self._admin.create_topics(new).values():
            future.result(30)

    def delete_all(self) -> None:
        if self.made:
            for future in self._admin.delete_topics(self.made).values():
                with contextlib.suppress(Exception):  # best effort
                    future.result(30)


@pytest.fixture
def kafka_topics(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Iterator[Any]:
    """``kafka_topics(tag, partitions=1, **config)`` creates a topic unique to the test on
    the shared Kafka and returns its name; ``kafka_topics.create(*names, partitions=1,
    **config)`` creates topics with exactly these names. All are deleted after the test."""
    topics = _KafkaTopics(kafka_bootstrap, unique_name)
    yield topics
    topics.delete_all()


def _read_topic(
    bootstrap: str,
    topic: str,
    count: int | Callable[[list[Any]], bool],
    within: float = 30,
    **config: Any,
) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{topic}-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
            "isolation.level": "read_committed",
            **config,
        }
    )
    done = count if callable(count) else lambda records: len(records) >= count
    consumer.subscribe([topic])
    records: list[Any] = []
    deadline = time.monotonic() + within
    try:
        while not done(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: only {len(records)} records in {within} s")
            for record in consumer.consume(1000, 0.2):
                if record.error() is not None:
                    raise AssertionError(f"{topic}: {record.error()}")
                records.append(record)
    finally:
        consumer.close()
    return records


@pytest.fixture
def read_topic() -> Callable[..., list[Any]]:
    """``read_topic(bootstrap, topic, count, within=30, **config)``: the records of
    ``topic`` from its start (read_committed, a new consumer group, nothing committed)
    until there are ``count`` of them (at least; or until ``count(records)`` is true when
    it is a function). Fails naming the topic when that takes longer than ``within``
    seconds or the consumer reports an error (a topic that does not exist is one)."""
    return _read_topic


class _KafkaReader:
    """Reads a topic from its start in a thread, keeping each record's message id."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Consumer

        self.ids: list[str] = []
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"check-{topic}-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": "false",
                "isolation.level": "read_committed",
            }
        )
        self._consumer.subscribe([topic])
        self._running = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        from arroyo import decode

        while self._running:
            for record in self._consumer.consume(1000, 0.1):
                if record.error() is None:
                    self.ids.append(decode(record.value()).id)

    def wait(self, condition: Callable[[], bool], within: float, what: str) -> None:
        """Block until ``condition()``; fail after ``within`` seconds, naming ``what``."""
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within} s: {what} ({len(self.ids)} read)")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop reading (``ids`` keeps what was read). Closing again does nothing."""
        if self._running:
            self._running = False
            self._thread.join()
            self._consumer.close()


@pytest.fixture
def kafka_reader() -> Iterator[Callable[[str, str], Any]]:
    """``kafka_reader(bootstrap, topic)`` starts reading ``topic`` from its start in a
    thread (read_committed; reconnects by itself while the broker is down): ``.ids`` are
    the message ids read so far, ``.wait(condition, within, what)`` polls with a deadline,
    ``.close()`` stops. Readers still open at the end of the test are closed."""
    readers: list[_KafkaReader] = []

    def start(bootstrap: str, topic: str) -> _KafkaReader:
        readers.append(_KafkaReader(bootstrap, topic))
        return readers[-1]

    yield start
    for reader in readers:
        reader.close()


# -- each broker with acknowledgements, reached the same way (the fuzz tests) ------------


@dataclass
class Broker:
    """How a test reaches one broker: URLs for a name, bytes written as they are, and a
    look at the dead letters. What ``create`` made is deleted after the test."""

    name: str
    listener: Callable[[str, str], str]  # (name, group) -> listener URL
    publisher: Callable[[str], str]  # name -> publisher URL
    make: Callable[[str], None]  # make the topic/stream/queue exist
    write: Callable[[str, tuple[bytes, ...]], None]  # put bytes that may not be Arroyo data
    read_dead: Callable[[str, int], list[tuple[bytes, dict[str, str]]]]
    delete: Callable[[list[str]], None]
    made: list[str] = field(default_factory=list)

    def create(self, name: str) -> None:
        """Make ``name`` exist (deleted after the test)."""
        self.made.append(name)
        self.make(name)

    def write_raw(self, name: str, *data: bytes) -> None:
        """Put ``data`` on ``name`` in this order, as they are, and return once the broker
        has them all."""
        self.write(name, data)

    def dead_letters(self, name: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
        """The first ``count`` dead letters on ``name``: original bytes and headers."""
        return self.read_dead(name, count)


def _memory_broker() -> Broker:
    from arroyo.brokers import memory

    def write(name: str, data: tuple[bytes, ...]) -> None:
        for item in data:
            memory.topic(name).append(item)

    def dead(name: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
        letters = memory.topic(name).messages()
        return [(bytes(m.payload), dict(m.metadata)) for m in letters[:count]]  # type: ignore[union-attr,arg-type]

    def delete(names: list[str]) -> None:
        for name in names:
            memory.delete(name)

    return Broker(
        "memory",
        lambda name, group: f"memory://{name}?group={group}",
        lambda name: f"memory://{name}",
        lambda name: None,
        write,
        dead,
        delete,
    )


def _kafka_broker(bootstrap: str) -> Broker:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})

    def create(name: str) -> None:
        for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
            future.result(30)

    def write(name: str, data: tuple[bytes, ...]) -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for item in data:
            producer.produce(name, item)
            producer.poll(0)
        assert producer.flush(30) == 0

    def dead(name: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
        records = _read_topic(bootstrap, name, count)
        return [(r.value() or b"", {k: v.decode() for k, v in r.headers()}) for r in records]

    def delete(names: list[str]) -> None:
        if names:
            for future in admin.delete_topics(names).values():
                with contextlib.suppress(Exception):  # best effort
                    future.result(30)

    return Broker(
        "kafka",
        lambda name, group: f"kafka://{bootstrap}/{name}?group={group}",
        lambda name: f"kafka://{bootstrap}/{name}",
        create,
        write,
        dead,
        delete,
    )


def _redis_broker(address: str) -> Broker:
    import redis

    client = redis.Redis.from_url(f"redis://{address}")

    def write(name: str, data: tuple[bytes, ...]) -> None:
        with client.pipeline(transaction=False) as pipe:
            for item in data:
                pipe.xadd(name, {"data": item})
            pipe.execute()

    def dead(name: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
        entries = client.xrange(name, count=count)
        return [
            (fields[b"data"], {k.decode(): v.decode() for k, v in fields.items() if k != b"data"})
            for _, fields in entries
        ]

    def delete(names: list[str]) -> None:
        if names:
            client.delete(*names)

    return Broker(
        "redis",
        lambda name, group: f"redis://{address}/{name}?group={group}&block_ms=50",
        lambda name: f"redis://{address}/{name}",
        lambda name: None,
        write,
        dead,
        delete,
    )


def _rabbitmq_broker(url: str) -> Broker:
    import aio_pika

    async def write(name: str, data: tuple[bytes, ...]) -> None:
        connection = await aio_pika.connect_robust(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(name, durable=True)
            for item in data:
                await channel.default_exchange.publish(aio_pika.Message(item), routing_key=name)

    async def read(name: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
        out: list[tuple[bytes, dict[str, str]]] = []
        connection = await aio_pika.connect_robust(url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, durable=True, passive=True)
            while len(out) < count:
                message = await queue.get(timeout=10)
                assert message is not None
                await message.ack()
                out.append((message.body, {k: str(v) for k, v in message.headers.items()}))
        return out

    async def declare(name: str) -> None:
        connection = await aio_pika.connect_robust(url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(name, durable=True)

    async def delete(names: list[str]) -> None:
        connection = await aio_pika.connect_robust(url)
        async with connection:
            channel = await connection.channel()
            for name in names:
                await channel.queue_delete(name)

    return Broker(
        "rabbitmq",
        lambda name, group: f"{url}?queue={name}",
        lambda name: f"{url}?queue={name}",
        lambda name: _run_in_thread(lambda: declare(name)),
        lambda name, data: _run_in_thread(lambda: write(name, data)),
        lambda name, count: _run_in_thread(lambda: read(name, count)),
        lambda names: _run_in_thread(lambda: delete(names)),
    )


def _run_in_thread(make: Callable[[], Any]) -> Any:
    """Run a coroutine to the end from a test that already has an event loop running."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(60)


@pytest.fixture(params=["memory", "kafka", "redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Each broker with acknowledgements in turn (the in-process memory broker, Kafka,
    Redis Streams, RabbitMQ), as a :class:`Broker`."""
    if request.param == "memory":
        made = _memory_broker()
    elif request.param == "kafka":
        made = _kafka_broker(request.getfixturevalue("kafka_bootstrap"))
    elif request.param == "redis":
        made = _redis_broker(request.getfixturevalue("redis_address"))
    else:
        made = _rabbitmq_broker(request.getfixturevalue("amqp_url"))
    yield made
    made.delete(made.made)


@pytest.fixture
def deleted_after(request: pytest.FixtureRequest) -> Iterator[Callable[[str, str], str]]:
    """``deleted_after(broker, name)`` returns ``name`` (a topic, stream or queue of
    ``kafka``, ``redis`` or ``rabbitmq``), deleted after the test like what
    :class:`Broker` makes, so the shared brokers keep nothing of the test."""
    factories: dict[str, Callable[[], Broker]] = {
        "kafka": lambda: _kafka_broker(request.getfixturevalue("kafka_bootstrap")),
        "redis": lambda: _redis_broker(request.getfixturevalue("redis_address")),
        "rabbitmq": lambda: _rabbitmq_broker(request.getfixturevalue("amqp_url")),
    }
    brokers: dict[str, Broker] = {}

    def delete_after(broker: str, name: str) -> str:
        if broker not in brokers:
            brokers[broker] = factories[broker]()
        brokers[broker].made.append(name)
        return name

    yield delete_after
    for made in brokers.values():
        made.delete(made.made)


@pytest.fixture
def provider() -> Iterator[Any]:
    """An OpenTelemetry SDK tracer provider of the test's own (not the process's global
    one); needs the extra otel."""
    from opentelemetry.sdk.trace import TracerProvider

    made = TracerProvider()
    yield made
    made.shutdown()


@pytest.fixture
def spans(provider: Any) -> Iterator[Any]:
    """Tracing on in this process, into an in-memory span exporter (off again after the
    test)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from arroyo.runtime import tracing

    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()
