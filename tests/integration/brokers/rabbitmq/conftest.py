"""Fixtures of the RabbitMQ integration tests: a channel, unique queues, queue depth."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest

Count = Callable[[aio_pika.abc.AbstractChannel, str], Awaitable[int]]


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        yield await connection.channel()


@pytest.fixture
async def queue(
    amqp_url: str, unique_name: Callable[[str], str]
) -> AsyncIterator[Callable[[str], str]]:
    """Makes queue names unique to the test; deletes the queues afterwards."""
    names: list[str] = []

    def make(tag: str = "queue") -> str:
        names.append(unique_name(tag))
        return names[-1]

    yield make
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


async def _count(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    """Messages ready in queue ``name`` (not counting those delivered and unacknowledged)."""
    declared = await channel.declare_queue(name, passive=True)
    assert declared.declaration_result.message_count is not None
    return declared.declaration_result.message_count


@pytest.fixture
def count() -> Count:
    """``await count(channel, name)``: messages ready in queue ``name``."""
    return _count
