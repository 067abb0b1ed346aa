"""How the contract tests reach each broker: one abstract interface (:class:`Broker`),
one implementation per broker, written with the broker's own client library (never
with Arroyo's connectors, which are what the tests check).

Names (topics, streams, queues, ports) are unique to the test and deleted after it.
A *source* is what a listener reads; a *destination* is what a publisher writes to and
the test reads back. On the brokers that store messages both are the same thing; on
ZeroMQ a source is a PUSH socket the test binds (the listener connects to it) and a
destination a PULL socket the test binds (the publisher connects to it).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.contract.adapters.base import Broker, Letter
from tests.contract.brokers import DECLARED

__all__ = ["Broker", "Letter", "make"]


def make(name: str, unique_name: Callable[[str], str], request: pytest.FixtureRequest) -> Broker:
    """The adapter of broker ``name``, reaching it at the address the root conftest finds
    (``CI=true``: failing when the broker does not answer)."""
    declared = DECLARED[name]
    if name == "memory":
        from tests.contract.adapters.memory import Memory

        return Memory(declared, unique_name)
    if name == "kafka":
        from tests.contract.adapters.kafka import Kafka

        return Kafka(declared, unique_name, request.getfixturevalue("kafka_bootstrap"))
    if name == "redis":
        from tests.contract.adapters.redis_streams import RedisStreams

        return RedisStreams(declared, unique_name, request.getfixturevalue("redis_address"))
    if name == "rabbitmq":
        from tests.contract.adapters.rabbitmq import RabbitMQ

        return RabbitMQ(declared, unique_name, request.getfixturevalue("amqp_url"))
    if name == "zmq":
        from tests.contract.adapters.zeromq import ZeroMQ

        return ZeroMQ(declared, unique_name)
    raise AssertionError(f"no adapter for {name!r}")
