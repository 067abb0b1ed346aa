"""The order of a Kafka publisher's messages when a delivery fails (producer.py: rule 2
of arroyo/runtime/ordering.py), with a fake librdkafka (conftest.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from arroyo import decode
from arroyo.brokers import memory, open_publisher
from arroyo.brokers.kafka.producer import Producer
from arroyo.brokers.memory import MemoryListener
from arroyo.errors import EncodeError, MessageTooLargeError, PublishError
from arroyo.message import Event
from arroyo.runtime import Block, RetryPolicy
from arroyo.runtime.ordering import NotSent
from arroyo.testing import make_run

ck = pytest.importorskip("confluent_kafka")


def producer(cluster: Any) -> tuple[Producer, Any]:
    """A producer on the fake librdkafka whose reports the test serves itself (no
    polling thread): ``fake.poll(0)`` runs the delivery callbacks, ``_resolve`` hands
    them to the futures, as the thread and the event loop do."""
    core = Producer("kafka://h:9092/out", {"bootstrap.servers": "h:9092"}, str)
    core.producer = ck.Producer({})
    core._loop = asyncio.get_running_loop()
    return core, core.producer


async def test_what_was_queued_behind_a_failed_delivery_is_not_written(fake_kafka: Any) -> None:
    """librdkafka retries in order until message.timeout.ms; then a message fails and
    what was queued behind it would still be delivered when the broker is back, ahead of
    its re-publication. The failure purges the queue at once: m1 and m2 fail with
    NotSent, unwritten, and so does m3, given before the event loop saw the failure.
    Published again in order, they reach the topic in order."""
    fake_kafka.delivering = lambda: False
    core, fake = producer(fake_kafka)
    sends = [core.produce("out", b"m%d" % i, None, [], f"m{i}") for i in range(3)]
    fake_kafka.deliver(error=ck.KafkaError._MSG_TIMED_OUT, count=1)
    fake.poll(0)  # the thread serving reports sees m0 fail
    sends.append(core.produce("out", b"m3", None, [], "m3"))
    fake_kafka.deliver()  # the broker is back: what is still queued goes out
    fake.poll(0)
    core._resolve()
    assert fake_kafka.topics.get("out", []) == []
    first = sends[0].exception()
    assert isinstance(first, PublishError) and not isinstance(first, NotSent)
    assert "_MSG_TIMED_OUT" in str(first)
    assert all(isinstance(s.exception(), NotSent) for s in sends[1:])

    again = [core.produce("out", b"m%d" % i, None, [], f"m{i}") for i in range(4)]
    fake_kafka.deliver()
    fake.poll(0)
    core._resolve()
    assert [s.result() for s in again] == [None] * 4
    assert fake_kafka.topics["out"] == [b"m0", b"m1", b"m2", b"m3"]


async def test_a_message_waiting_for_room_is_not_written_after_a_failure(
    fake_kafka: Any,
) -> None:
    """librdkafka's queue is full: m2 waits in the producer's backlog. m0 fails, m1 is
    purged; m2, given behind them, fails with NotSent instead of being handed over."""
    fake_kafka.delivering = lambda: False
    core, fake = producer(fake_kafka)
    fake.capacity = 2
    sends = [core.produce("out", b"m%d" % i, None, [], f"m{i}") for i in range(3)]
    assert core.outstanding == 3 and len(fake.queue) == 2
    fake_kafka.deliver(error=ck.KafkaError._MSG_TIMED_OUT, count=1)
    fake.poll(0)
    fake.poll(0)
    core._resolve()
    assert [type(s.exception()) for s in sends] == [PublishError, NotSent, NotSent]
    assert fake.queue == [] and core.outstanding == 0


async def test_a_batch_is_produced_in_order_and_a_refused_message_fails_alone(
    fake_kafka: Any,
) -> None:
    """produce_many: a future per message; m2, too large, fails at once and alone (it
    is dead-lettered: nothing waits for it); m4 and m5 wait for room in the backlog; the
    topic gets the others in order."""
    core, fake = producer(fake_kafka)
    fake_kafka.delivering = lambda: False
    fake.max_size, fake.capacity = 10, 3
    values = [b"m0", b"m1", b"m2" * 10, b"m3", b"m4", b"m5"]
    sends = core.produce_many("out", [(v, None, [], f"m{i}") for i, v in enumerate(values)])
    assert len(sends) == len(values)
    assert isinstance(sends[2].exception(), MessageTooLargeError)
    assert len(fake.queue) == 3 and core.outstanding == 5
    while core.outstanding:
        fake_kafka.deliver()
        fake.poll(0)
        core._resolve()
    assert [s.exception() for i, s in enumerate(sends) if i != 2] == [None] * 5
    assert fake_kafka.topics["out"] == [b"m0", b"m1", b"m3", b"m4", b"m5"]


async def test_a_batch_stops_at_a_message_that_must_not_be_written(fake_kafka: Any) -> None:
    """m0's delivery failed (seen by the thread serving reports, not yet by the loop):
    the next batch's first message fails with NotSent at once, and the batch stops there,
    so that the runtime holds the rest back (rule 1 of arroyo/runtime/ordering.py)."""
    fake_kafka.delivering = lambda: False
    core, fake = producer(fake_kafka)
    (first,) = core.produce_many("out", [(b"m0", None, [], "m0")])
    fake_kafka.deliver(error=ck.KafkaError._MSG_TIMED_OUT, count=1)
    fake.poll(0)
    sends = core.produce_many("out", [(b"m%d" % i, None, [], f"m{i}") for i in (1, 2, 3)])
    assert len(sends) == 1 and isinstance(sends[0].exception(), NotSent)
    core._resolve()
    assert isinstance(first.exception(), PublishError)
    assert fake.queue == [] and core.outstanding == 0


async def test_a_message_that_cannot_be_encoded_fails_alone_in_a_batch(
    fake_kafka: Any,
) -> None:
    """KafkaPublisher.send_many: the message in the middle breaks the schema (an
    EncodeError, at once); the messages around it are produced, in order."""
    publisher = open_publisher("kafka://h:9092/out")
    messages = make_run(5)
    messages[2] = Event({"x": object()}, b"", stream=messages[2].stream)
    async with publisher:
        sends = publisher.send_many(messages, [None] * len(messages))
        assert isinstance(sends[2].exception(), EncodeError)
        await asyncio.gather(*(s for i, s in enumerate(sends) if i != 2))
    written = [decode(v).id for v in fake_kafka.topics["out"]]
    assert written == [m.id for i, m in enumerate(messages) if i != 2]


async def test_a_block_keeps_input_order_when_a_delivery_fails(
    fake_kafka: Any, until: Any, unique_name: Any
) -> None:
    """End to end through the runtime: the first delivery times out while the others
    wait in librdkafka's queue; when the broker is back, the topic holds the run in
    input order (the runtime publishes the failed one, then the rest, again)."""
    name = unique_name("in")
    messages = make_run(8)
    for message in messages:
        memory.topic(name).put(message)
    fake_kafka.delivering = lambda: False
    publisher = open_publisher("kafka://h:9092/out")
    retry = RetryPolicy(None, 0.001, 0.01)
    block = Block(MemoryListener(name), None, [publisher], publish_retry=retry)
    running = asyncio.create_task(block.run())
    try:
        producers = fake_kafka.producers  # the first one checked the settings
        queued = lambda: len(producers) == 2 and len(producers[1].queue) == len(messages)  # noqa: E731
        await until(queued, 10, "every message queued")
        fake_kafka.deliver(error=ck.KafkaError._MSG_TIMED_OUT, count=1)
        await until(lambda: block.stats.retried, 10, "the failed message published again")
        fake_kafka.delivering = lambda: True
        await until(lambda: block.stats.acknowledged == len(messages), 10, "all acknowledged")
    finally:
        block.stop()
        await asyncio.wait_for(running, 10)
        memory.delete(name)
    assert [decode(v).id for v in fake_kafka.topics["out"]] == [m.id for m in messages]


@pytest.mark.parametrize(
    ("error", "failures"),
    [
        (
            ck.KafkaError(ck.KafkaError._FENCED, "fenced by newer producer", fatal=True),
            ["kafka://h:9092/out: fatal producer error: fenced by newer producer"],
        ),
        (ck.KafkaError(ck.KafkaError._TRANSPORT, "broker down"), []),
    ],
)
async def test_an_error_raised_by_poll_leaves_the_thread_serving_delivery_reports(
    fake_kafka: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Any,
    failures: list[str],
) -> None:
    """librdkafka's poll raises an error (a fatal one: a fenced transactional producer)
    instead of only calling error_cb. The polling thread died of it, and no delivery
    report was served after. Now a fatal error tells the loop once; another is logged
    and fails nothing; reports are still served."""
    core, fake = producer(fake_kafka)
    raised, served = 0, fake.poll

    def poll(timeout: float = 0) -> int:
        nonlocal raised
        if raised < 3:
            raised += 1
            raise ck.KafkaException(error)
        return served(timeout)

    monkeypatch.setattr(fake, "poll", poll)
    failed: list[BaseException] = []
    core.on_failure = failed.append
    core._started = True
    core._start_polling()
    try:
        await asyncio.wait_for(core.produce("out", b"m0", None, [], "m0"), 10)
        assert core._thread is not None and core._thread.is_alive()
        assert raised == 3
        assert [str(f) for f in failed] == failures
        if not failures:
            assert core.fatal is None
            assert "kafka://h:9092/out: broker down" in caplog.messages
    finally:
        await core._stop_polling()
