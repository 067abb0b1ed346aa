"""OpenTelemetry tracing across real brokers: one message from a detector on ZeroMQ,
through the bridge into Kafka, through a Kafka worker Block into Redis Streams, is one
trace; and each connector carries the W3C trace context in its headers (Kafka record
headers, a field of a Redis Streams entry, AMQP headers, a last ZeroMQ frame)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from arroyo import Event, decode, encode
from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output, tracing
from arroyo.testing import Collect, free_port

zmq = pytest.importorskip("zmq")
redis = pytest.importorskip("redis")

Until = Callable[..., Any]


class Integrate(Operator):
    """A worker's operator: a new Event (the payload's byte sum) per input Event."""

    async def process(self, message: Message) -> Output:
        assert isinstance(message, Event)
        total = sum(bytes(message.payload))
        return Event(stream=message.stream, seq=message.seq, metadata={"sum": total})


def ids(span: Any) -> tuple[int, int]:
    """The trace and span id of a finished span (or of a span context)."""
    context = getattr(span, "context", span)
    return context.trace_id, context.span_id


async def test_one_message_from_zmq_through_kafka_into_redis_is_one_trace(
    spans: InMemorySpanExporter,
    provider: TracerProvider,
    kafka_bootstrap: str,
    kafka_topics: Any,
    redis_address: str,
    unique_name: Callable[[str], str],
    until: Until,
) -> None:
    topic = kafka_topics("frames")
    stream = unique_name("results")
    port = free_port()
    bridge = Block(
        open_listener(f"zmq+pull://127.0.0.1:{port}?bind=true"),
        publishers=[open_publisher(f"kafka://{kafka_bootstrap}/{topic}")],
        name="bridge",
        max_messages=1,
    )
    worker = Block(
        open_listener(f"kafka://{kafka_bootstrap}/{topic}?group={unique_name('workers')}"),
        Integrate(),
        [open_publisher(f"redis://{redis_address}/{stream}")],
        name="worker",
        max_messages=1,
    )
    client = redis.Redis.from_url(f"redis://{redis_address}")
    running = [asyncio.create_task(worker.run()), asyncio.create_task(bridge.run())]
    context = zmq.asyncio.Context()
    push = context.socket(zmq.PUSH)
    try:
        push.connect(f"tcp://127.0.0.1:{port}")
        # The detector: its own span, whose context goes with the frame (a last frame).
        with provider.get_tracer("detector").start_as_current_span("detector") as detector:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            frame = Event(stream="scan-1", seq=1, payload=bytes(range(256)))
            await push.send_multipart([encode(frame), tracing.zmq_frame(carrier)])
        await asyncio.wait_for(asyncio.gather(*running), 60)

        entries = client.xrange(stream)
        assert len(entries) == 1
        _, fields = entries[0]
        result = decode(fields[b"data"])
        assert isinstance(result, Event) and result.metadata == {"sum": sum(range(256))}
    finally:
        for task in running:
            task.cancel()
        push.close(0)
        context.term()
        client.delete(stream)
        client.close()

    finished = spans.get_finished_spans()
    by = {(s.name, s.attributes["arroyo.block"]): s for s in finished if s.name != "detector"}
    assert sorted(by) == [
        ("process", "bridge"),
        ("process", "worker"),
        ("publish", "bridge"),
        ("publish", "worker"),
        ("receive", "bridge"),
        ("receive", "worker"),
    ]
    trace_id = detector.get_span_context().trace_id
    assert {s.context.trace_id for s in finished} == {trace_id}  # one trace, end to end
    # parent links: detector -> receive -> process -> publish, hop after hop
    chain = [
        ("receive", "bridge"),
        ("process", "bridge"),
        ("publish", "bridge"),
        ("receive", "worker"),
        ("process", "worker"),
        ("publish", "worker"),
    ]
    parent = detector.get_span_context().span_id
    for key in chain:
        span = by[key]
        assert span.parent is not None and span.parent.span_id == parent, key
        parent = span.context.span_id
    assert by[("receive", "bridge")].parent.is_remote  # came in a ZeroMQ frame
    assert by[("receive", "worker")].parent.is_remote  # came in Kafka record headers

    systems = {key: by[key].attributes["messaging.system"] for key in chain}
    assert systems[("receive", "bridge")] == "zeromq"
    assert systems[("publish", "bridge")] == systems[("receive", "worker")] == "kafka"
    assert systems[("publish", "worker")] == "redis"
    assert by[("publish", "bridge")].attributes["messaging.destination.name"].endswith(topic)
    assert by[("publish", "worker")].attributes["arroyo.stream"] == "scan-1"
    # what Redis holds names the worker's publish span: the next hop continues the trace
    published = by[("publish", "worker")]
    carried = propagate.extract({"traceparent": fields[b"traceparent"].decode()})
    assert ids(trace.get_current_span(carried).get_span_context()) == ids(published)


# -- each connector, both ways ------------------------------------------------------------


async def round_trip(listen_url: str, publish_url: str, until: Until) -> dict[str, str] | None:
    """Publish one Event carrying trace context to ``publish_url``; the trace context the
    listener of ``listen_url`` hands over with it (tracing on)."""
    sent = Event(stream="scan-2", payload=b"x")
    headers = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01", "tracestate": "facility=als"}
    listener = open_listener(listen_url)
    publisher = open_publisher(publish_url)
    collect = Collect()
    await listener.connect()
    await publisher.start()
    listening = asyncio.create_task(listener.start(collect))
    try:
        ready = getattr(listener, "ready", None)  # a ZeroMQ listener binds in start()
        if ready is not None:
            await asyncio.wait_for(ready.wait(), 30)
        await publisher.send(replace(sent, trace=headers))
        await until(lambda: collect.items, within=30, what=f"a message from {listen_url}")
        (received,) = collect.items
        assert decode(received.data).id == sent.id  # type: ignore[arg-type]
        return dict(received.trace) if received.trace is not None else None
    finally:
        await listener.stop()
        await asyncio.wait_for(listening, 30)
        await listener.close()
        await publisher.close()


EXPECTED = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01", "tracestate": "facility=als"}


async def test_kafka_carries_trace_context_in_record_headers(
    spans: InMemorySpanExporter,
    kafka_bootstrap: str,
    kafka_topics: Any,
    unique_name: Callable[[str], str],
    until: Until,
) -> None:
    topic = kafka_topics("t")
    group = unique_name("g")
    url = f"kafka://{kafka_bootstrap}/{topic}"
    assert await round_trip(f"{url}?group={group}", url, until) == EXPECTED


async def test_redis_streams_carry_trace_context_in_fields_of_the_entry(
    spans: InMemorySpanExporter,
    redis_address: str,
    unique_name: Callable[[str], str],
    until: Until,
) -> None:
    stream = unique_name("s")
    url = f"redis://{redis_address}/{stream}"
    try:
        assert await round_trip(f"{url}?group={unique_name('g')}", url, until) == EXPECTED
    finally:
        client = redis.Redis.from_url(f"redis://{redis_address}")
        client.delete(stream)
        client.close()


async def test_rabbitmq_carries_trace_context_in_amqp_headers(
    spans: InMemorySpanExporter,
    amqp_url: str,
    unique_name: Callable[[str], str],
    until: Until,
) -> None:
    import aio_pika

    queue = unique_name("q")
    url = f"{amqp_url}?queue={queue}"
    try:
        assert await round_trip(url, url, until) == EXPECTED
    finally:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue)


async def test_zeromq_carries_trace_context_in_a_last_frame(
    spans: InMemorySpanExporter, until: Until
) -> None:
    port = free_port()
    listen = f"zmq+pull://127.0.0.1:{port}?bind=true"
    assert await round_trip(listen, f"zmq+push://127.0.0.1:{port}", until) == EXPECTED


async def test_with_tracing_off_a_listener_drops_the_trace_frame_and_sets_nothing(
    until: Until,
) -> None:
    assert not tracing.on
    port = free_port()
    listen = f"zmq+pull://127.0.0.1:{port}?bind=true"
    assert await round_trip(listen, f"zmq+push://127.0.0.1:{port}", until) is None
