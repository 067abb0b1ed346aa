"""What ``arroyo run`` does with Kafka topics before the blocks start: create those whose
endpoint says ``create:``, and warn when a consumer group has more workers than its
topic has partitions (see :mod:`arroyo.brokers.kafka.admin`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from arroyo.brokers import parse_url
from arroyo.errors import ConfigError

if TYPE_CHECKING:
    from arroyo.brokers.kafka.admin import TopicRequest
    from arroyo.build import Built
    from arroyo.config import Endpoint


def endpoints(built: Built, where: str) -> Iterator[tuple[str, Endpoint, Any]]:
    """Each endpoint of a block: ``(where.key, its config, the listener or publisher)``."""
    block = built.block
    yield f"{where}.listener", built.config.listener, block.listener
    for i, (endpoint, publisher) in enumerate(
        zip(built.config.publishers, block.publishers, strict=True)
    ):
        yield f"{where}.publishers[{i}]", endpoint, publisher
    if built.config.dead_letter is not None:
        yield f"{where}.dead_letter", built.config.dead_letter, block.dead_letter


def _where(source: str, index: int, built: Built) -> str:
    return f"{source}: blocks[{index}] ({built.config.name})"


def requests(blocks: list[Built], source: str) -> list[TopicRequest]:
    """The topics that ``create:`` asks for. Raises ConfigError for ``create:`` on an
    endpoint that is not Kafka, or on a topic pattern."""
    found: list[TopicRequest] = []
    for index, built in enumerate(blocks):
        for where, endpoint, connector in endpoints(built, _where(source, index, built)):
            if endpoint.create is None:
                continue
            if parse_url(endpoint.url).scheme != "kafka":
                raise ConfigError(
                    f"{where}.create: Arroyo creates Kafka topics only; "
                    f"{connector.name} is not Kafka"
                )
            from arroyo.brokers.kafka import admin as kafka_admin

            topics = getattr(connector, "topics", None) or [connector.topic]
            found += kafka_admin.request(
                where, connector.config, topics, endpoint.create.model_dump()
            )
    return found


def create(blocks: list[Built], source: str) -> None:
    """Create the missing topics that ``create:`` asks for (before any block starts)."""
    wanted = requests(blocks, source)
    if wanted:
        from arroyo.brokers.kafka import admin as kafka_admin

        kafka_admin.create(wanted)


def warn_idle_workers(blocks: list[Built], source: str, workers: int) -> None:
    """One warning per Kafka listener topic with fewer partitions than ``workers``."""
    if workers < 2:
        return
    for index, built in enumerate(blocks):
        if parse_url(built.config.listener.url).scheme != "kafka":
            continue
        from arroyo.brokers.kafka import admin as kafka_admin

        listener: Any = built.block.listener
        kafka_admin.warn_idle_workers(
            f"{_where(source, index, built)}.listener",
            listener.config,
            listener.topics,
            listener.group,
            workers,
        )
