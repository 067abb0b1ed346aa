"""The test harness: real broker addresses, and names that are unique per test.

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
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

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
        parts = urlsplit(value if "://" in value else f"tcp://{value}")
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
