"""``arroyo view`` on every broker: it shows a run as it comes, and leaves the source as
it was (looking), or takes only its own share (consuming, ``--consume``)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from arroyo.brokers import parse_url
from arroyo.errors import ConfigError
from arroyo.message import Message, Run
from arroyo.parsers import make_parser
from arroyo.runtime.parser import AvroParser
from arroyo.testing import free_port, publish_all
from arroyo.view.client import ViewClient
from arroyo.view.server import ViewServer, acquire, release
from arroyo.view.settings import ViewSettings
from arroyo.view.source import Source, plan


def a_run(stream: str, frames: int = 3) -> list[Message]:
    run = Run(stream)
    return [
        run.start({"sample": stream}),
        *(run.array_event(np.full((16, 16), i, dtype="<u2"), {"i": i}) for i in range(frames)),
        run.stop({"exit_status": "success"}),
    ]


@contextlib.asynccontextmanager
async def viewing(url: str, **how: Any) -> AsyncIterator[tuple[Source, ViewServer, ViewClient]]:
    """``arroyo view URL`` in this process: the source read into a server, and a page's
    client connected once reading has started."""
    parsed = parse_url(url)
    parser_name = parsed.query.pop("parser", "arroyo")
    parser = AvroParser() if parser_name == "arroyo" else make_parser(parser_name)
    source = plan(parsed, parser, **how)
    # Every message and frame, however fast they come: this is about reading sources.
    server = await asyncio.to_thread(acquire, "127.0.0.1", 0, ViewSettings(max_fps=0))
    reading = asyncio.create_task(source.run(server))
    client = ViewClient(server.url)
    try:
        opened = asyncio.create_task(source.opened.wait())
        await asyncio.wait({opened, reading}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if reading.done():
            reading.result()  # raises what reading the source raised
        assert source.opened.is_set(), f"{url}: reading did not start within 30 s"
        await client.connect()
        yield source, server, client
    finally:
        try:
            await client.close()
            source.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(reading, 30)
        finally:
            await asyncio.to_thread(release, server)


async def shows(client: ViewClient, stream: str, frames: int = 3) -> None:
    """The client gets the run ``stream``: its Start, frames and Stop (and nothing of
    any other run)."""
    await client.read(until=lambda h: h["type"] == "stop" and h["message"]["stream"] == stream)
    got = [(h["type"], h["message"]["stream"]) for h in client.messages]
    assert got == [("start", stream)] + [("event", stream)] * frames + [("stop", stream)]
    assert client.messages[0]["message"]["data"] == {"sample": stream}
    assert client.images == frames


# -- Kafka -------------------------------------------------------------------------------


def committed(bootstrap: str, topic: str) -> dict[str, int]:
    """Every consumer group's committed offset on partition 0 of ``topic``."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    out = {}
    for group in admin.list_consumer_groups(request_timeout=10).result().valid:
        request = [ConsumerGroupTopicPartitions(group.group_id, [TopicPartition(topic, 0)])]
        try:
            reply = admin.list_consumer_group_offsets(request)[group.group_id].result(10)
        except Exception:
            continue  # deleted meanwhile (other tests share the cluster)
        for tp in reply.topic_partitions:
            if tp.offset >= 0:
                out[group.group_id] = tp.offset
    return out


def commit_as_pipeline(bootstrap: str, topic: str, offset: int) -> str:
    """A consumer group that has read ``topic`` up to ``offset`` (a running pipeline)."""
    from confluent_kafka import Consumer, TopicPartition

    group = f"t-pipeline-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    consumer.close()
    return group


@pytest.mark.kafka
async def test_kafka_is_watched_from_the_latest_offset_without_a_group(
    kafka_bootstrap: str, kafka_topics: Any
) -> None:
    topic = kafka_topics("viewed")
    url = f"kafka://{kafka_bootstrap}/{topic}"
    await publish_all(url, a_run("before"))
    pipeline = commit_as_pipeline(kafka_bootstrap, topic, 2)
    before = committed(kafka_bootstrap, topic)
    async with viewing(url) as (_, _, client):
        await publish_all(url, a_run("live"))
        await shows(client, "live")  # "before" was there already: not shown
    assert committed(kafka_bootstrap, topic) == before == {pipeline: 2}


@pytest.mark.kafka
async def test_kafka_consumed_in_a_group_of_the_viewers_own(
    kafka_bootstrap: str, kafka_topics: Any
) -> None:
    topic = kafka_topics("consumed")
    group = f"t-viewer-{uuid.uuid4().hex[:8]}"
    url = f"kafka://{kafka_bootstrap}/{topic}?group={group}"
    pipeline = commit_as_pipeline(kafka_bootstrap, topic, 0)
    async with viewing(url, consume=True) as (source, _, client):
        assert source.consume
        await publish_all(f"kafka://{kafka_bootstrap}/{topic}", a_run("consumed"))
        await shows(client, "consumed")
    offsets = committed(kafka_bootstrap, topic)
    assert offsets[pipeline] == 0 and offsets[group] == 5


# -- Redis Streams -----------------------------------------------------------------------


@pytest.mark.redis
async def test_a_redis_stream_is_watched_without_a_consumer_group(
    redis_address: str, unique_name: Callable[[str], str]
) -> None:
    import redis.asyncio as aioredis

    stream = unique_name("viewed")
    url = f"redis://{redis_address}/{stream}"
    host, port = redis_address.split(":")
    client = aioredis.Redis(host=host, port=int(port))
    try:
        await publish_all(url, a_run("before"))
        async with viewing(url) as (_, _, viewer):
            await publish_all(url, a_run("live"))
            await shows(viewer, "live")
        assert await client.xlen(stream) == 10  # nothing taken
        assert await client.xinfo_groups(stream) == []  # no group made
    finally:
        await client.delete(stream)
        await client.aclose()


# -- RabbitMQ ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def rabbitmq_queue(amqp_url: str, name: str, queue_type: str) -> AsyncIterator[Any]:
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": queue_type})
    try:
        yield queue
    finally:
        await channel.queue_delete(name)
        await connection.close()


@pytest.mark.rabbitmq
async def test_a_rabbitmq_stream_queue_is_watched_and_keeps_everything(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("stream")
    url = f"{amqp_url}?queue={name}&declare=false"
    async with rabbitmq_queue(amqp_url, name, "stream"):
        await publish_all(url, a_run("before"))
        async with viewing(url) as (_, _, client):
            await publish_all(url, a_run("live"))
            await shows(client, "live")


@pytest.mark.rabbitmq
async def test_a_classic_queue_is_not_looked_at_but_can_be_consumed(
    amqp_url: str, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("classic")
    url = f"{amqp_url}?queue={name}&declare=false"
    async with rabbitmq_queue(amqp_url, name, "classic") as queue:
        await publish_all(url, a_run("held"))
        for how in ({}, {"from_beginning": True}):
            with pytest.raises(ConfigError, match=r"not a stream queue|without holding"):
                async with viewing(url, **how):
                    pass
        await queue.declare()
        assert queue.declaration_result.message_count == 5  # all still there
        async with viewing(url, consume=True) as (_, _, client):
            await shows(client, "held")
        await asyncio.sleep(0)
        result = await queue.declare()
        assert result.message_count == 0  # the viewer's own queue: consumed


# -- ZeroMQ ------------------------------------------------------------------------------


async def test_a_zeromq_publisher_is_watched_by_subscribing() -> None:
    port = free_port()
    from arroyo.brokers import open_publisher

    async with (
        open_publisher(f"zmq+pub://127.0.0.1:{port}?bind=true") as sender,
        viewing(f"zmq+sub://127.0.0.1:{port}") as (_, _, client),
    ):
        # PUB/SUB: what is sent before the subscription reaches the sender is lost.
        probe = Run("probe")
        while not any(h["type"] != "hello" for h in client.messages):
            await sender.publish(probe.event({"probe": True}))
            with contextlib.suppress(TimeoutError):
                await client.read(until=lambda h: h["type"] == "event", within=0.2)
        client.messages.clear()
        for message in a_run("live"):
            await sender.publish(message)
        await shows(client, "live")


async def test_zeromq_pull_is_consumed_and_its_gaps_are_shown() -> None:
    port = free_port()
    from arroyo.brokers import open_publisher

    async with viewing(f"zmq+pull://127.0.0.1:{port}?bind=true") as (source, _, client):
        assert source.consume
        messages = a_run("gappy", frames=5)
        del messages[3:5]  # two frames lost on the way
        async with open_publisher(f"zmq+push://127.0.0.1:{port}") as sender:
            for message in messages:
                await sender.publish(message)
        await client.read(until=lambda h: h["type"] == "stop")
        await client.read(until=lambda h: h["type"] == "status" and h["lost"] == 2)
        assert client.status is not None and client.status["run"]["seq_gaps"] == 2
