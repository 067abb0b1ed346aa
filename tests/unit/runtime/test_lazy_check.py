"""A Block whose listener reads lazily (``check: lazy``), on memory connectors: what is
forwarded unread goes on as it came; what an operator reads is checked, and a message
that fails that check is dead-lettered alone while the run goes on."""

from __future__ import annotations

from collections.abc import Callable

from arroyo import DecodeError, Event
from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener, MemoryPublisher
from arroyo.codec import Codec
from arroyo.codec_lazy import DeferredEvent
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output
from arroyo.runtime.parser import AvroParser
from arroyo.testing import Recorder, bomb, make_run

NESTED = bomb("nesting", event=True)
"""An Event whose metadata nests lists 5,000 deep (a full decode refuses it)."""


def fill(name: str) -> list[bytes]:
    """A run of 3 events with the nesting Event after the first, in memory topic ``name``;
    the bytes, in order."""
    run = make_run(3, "lazy")
    data = [Codec().encode(m) for m in run]
    data.insert(2, NESTED)
    for item in data:
        memory.topic(name).append(item)
    return data


def listener(name: str) -> MemoryListener:
    return MemoryListener(name, stop_at_end=True, parser=AvroParser(Codec(lazy=True)))


async def test_forwarded_unread_every_message_goes_on_as_it_came(
    topic: Callable[[str], str],
) -> None:
    source, destination = topic("src"), topic("dst")
    data = fill(source)
    dead = Recorder()
    block = Block(listener(source), None, [MemoryPublisher(destination)], dead_letter=dead)
    stats = await block.run()
    assert memory.topic(destination).entries == data  # the nesting Event too, unchecked
    assert dead.dead_letters == []
    assert memory.topic(source).acked() == set(range(len(data)))
    assert stats.dead_lettered == 0


async def test_a_message_that_fails_when_read_is_dead_lettered_and_the_run_goes_on(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    data = fill(source)
    seen: list[bool] = []

    class Frames(Operator):
        async def process(self, message: Message) -> Output:
            if isinstance(message, Event):
                seen.append(isinstance(message, DeferredEvent) and not message.decoded)
                return Event({"n": len(message.metadata)}, stream=message.stream)
            return message

    out, dead = Recorder(), Recorder()
    block = Block(listener(source), Frames(), [out], dead_letter=dead)
    stats = await block.run()
    assert seen and all(seen)  # each Event reached the operator undecoded
    [letter] = dead.dead_letters
    assert letter.data == NESTED
    assert letter.error == DecodeError.__name__
    assert "nesting deeper than 64 levels" in letter.reason
    assert letter.attempts == 1  # a DecodeError is permanent: not retried
    assert [m.kind for m in out.published] == ["start", "event", "event", "event", "stop"]
    assert stats.dead_lettered == 1
    assert memory.topic(source).acked() == set(range(len(data)))
