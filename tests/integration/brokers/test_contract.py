"""One contract, every broker with acknowledgements: the same tests run against the
in-process memory broker, Kafka, Redis Streams and RabbitMQ, so that none of them can
drift from the others. (ZeroMQ and Redis pub/sub have no acknowledgements: their own
tests say what they promise instead.)

- A Block forwards a run in order and acknowledges every message.
- What a listener received and did not acknowledge is delivered again to the next
  listener of its group.
- A message that cannot be read goes to the dead-letter destination as the original
  bytes, with the reason and where it came from; the messages after it go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from arroyo import DecodeError
from arroyo.brokers import open_listener
from arroyo.runtime import Block
from arroyo.testing import Recorder, listening, make_run, publish_all

Until = Callable[..., Any]
Broker = Any  # tests/conftest.py: Broker (the ``broker`` fixture runs each test on each)


async def test_a_block_forwards_a_run_in_order_and_acknowledges_it(
    broker: Broker, unique_name: Callable[[str], str]
) -> None:
    source, group = unique_name("source"), unique_name("group")
    broker.create(source)
    sent = make_run(30)
    await publish_all(broker.publisher(source), sent)
    out = Recorder()
    first = Block(open_listener(broker.listener(source, group)), None, [out])
    first.max_messages = len(sent)
    stats = await first.run()
    assert out.published == sent
    assert stats.acknowledged == len(sent)
    # Everything was acknowledged: the group's next listener gets only what comes next.
    later = make_run(1, stream="later")
    await publish_all(broker.publisher(source), later)
    again = Recorder()
    second = Block(open_listener(broker.listener(source, group)), None, [again])
    second.max_messages = len(later)
    await second.run()
    assert again.published == later


async def test_what_was_not_acknowledged_is_delivered_again(
    broker: Broker, unique_name: Callable[[str], str], until: Until
) -> None:
    source, group = unique_name("source"), unique_name("group")
    broker.create(source)
    await publish_all(broker.publisher(source), make_run(3))
    async with listening(open_listener(broker.listener(source, group))) as first:
        await until(lambda: len(first.items) == 5, what="the run received once")
    listener = open_listener(broker.listener(source, group))
    async with listening(listener) as again:
        await until(lambda: len(again.items) == 5, what="the run received again")
        assert [bytes(r.data) for r in again.items] == [bytes(r.data) for r in first.items]  # type: ignore[arg-type]
        assert all(r.deliveries >= 2 for r in again.items) or broker.name == "kafka"
        for received in again.items:
            await listener.ack(received)


async def test_an_unreadable_message_goes_to_the_dead_letter_and_the_rest_goes_on(
    broker: Broker, unique_name: Callable[[str], str]
) -> None:
    from arroyo.brokers import open_publisher

    source, dead, group = unique_name("source"), unique_name("dead"), unique_name("group")
    broker.create(source)
    broker.create(dead)
    before, after = make_run(1, stream="a"), make_run(1, stream="b")
    await publish_all(broker.publisher(source), before)
    broker.write_raw(source, b"not Avro at all")
    await publish_all(broker.publisher(source), after)
    out = Recorder()
    block = Block(
        open_listener(broker.listener(source, group)),
        None,
        [out],
        dead_letter=open_publisher(broker.publisher(dead)),
    )
    block.max_messages = len(before) + 1 + len(after)
    stats = await block.run()
    assert out.published == before + after
    assert stats.dead_lettered == 1
    [(data, headers)] = broker.dead_letters(dead, 1)
    assert data == b"not Avro at all"
    assert headers["arroyo.dead-letter.error"] == DecodeError.__name__
    assert "not Arroyo data" in headers["arroyo.dead-letter.reason"]
    source_keys = [k for k in headers if k.startswith("arroyo.source.")]
    assert "arroyo.source.url" in source_keys, json.dumps(headers)
