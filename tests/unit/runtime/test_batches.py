"""Batches through a Block: an operator's ``process_batch`` gets what the listener handed
over together, and a message that fails is still dead-lettered alone (memory connectors)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from arroyo import DecodeError, Event, decode
from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener, MemoryPublisher
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output, RetryPolicy
from arroyo.testing import Recorder, make_run

FAST = RetryPolicy(attempts=2, initial=0.001, maximum=0.002)


def fill(name: str, count: int) -> None:
    """A run of ``count`` Events (with its Start and Stop) into memory topic ``name``."""
    put = memory.topic(name).put
    for message in make_run(count):
        put(message)


class Tagging(Operator):
    """Tags each Event with the size of the batch it came in (``process``: 0); fails, in
    both methods, on the Event whose ``i`` is in ``bad``."""

    def __init__(self, bad: Sequence[int] = ()) -> None:
        self.bad = set(bad)
        self.batches: list[int] = []
        self.singles: list[int] = []

    def _tag(self, message: Message, size: int) -> Output:
        if not isinstance(message, Event):
            return message
        if message.metadata["i"] in self.bad:
            raise ValueError(f"frame {message.metadata['i']} is broken")
        return Event({**message.metadata, "batch": size}, message.payload, stream=message.stream)

    async def process(self, message: Message) -> Output:
        if isinstance(message, Event):
            self.singles.append(message.metadata["i"])
        return self._tag(message, 0)

    async def process_batch(self, messages: Sequence[Message]) -> list[Output]:
        self.batches.append(len(messages))
        return [self._tag(message, len(messages)) for message in messages]


def frames(out: Recorder) -> list[tuple[int, int]]:
    """(i, batch) of each Event published."""
    return [(m.metadata["i"], m.metadata["batch"]) for m in out.published if isinstance(m, Event)]


async def test_one_call_gets_what_was_handed_over_together_and_outputs_keep_the_order(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    fill(source, 50)
    operator, out = Tagging(), Recorder()
    block = Block(MemoryListener(source, stop_at_end=True), operator, [out], batch_size=20)
    stats = await block.run()
    assert [i for i, _ in frames(out)] == list(range(50))
    assert operator.singles == []
    assert max(operator.batches) == 20  # bounded by batch_size
    assert len(operator.batches) < 52 / 2  # and really batches, not one message each
    assert sum(operator.batches) == 52  # Start and Stop too
    assert memory.topic(source).acked() == set(range(52))
    assert (stats.received, stats.published, stats.acknowledged) == (52, 52, 52)


async def test_a_batch_that_fails_is_processed_one_by_one_and_only_the_bad_one_is_dead(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    sent = make_run(10)
    for message in sent:
        memory.topic(source).put(message)
    operator, out, dead = Tagging(bad=[4]), Recorder(), Recorder()
    block = Block(
        MemoryListener(source, stop_at_end=True), operator, [out], dead_letter=dead, retry=FAST
    )
    stats = await block.run()
    assert [i for i, _ in frames(out)] == [0, 1, 2, 3, 5, 6, 7, 8, 9]  # each once, in order
    assert {batch for _, batch in frames(out)} == {0}  # from process(): the batch failed
    assert operator.singles.count(4) == 2  # frame 4 alone, with its retry
    [letter] = dead.dead_letters
    assert letter.reason == "frame 4 is broken"
    assert decode(letter.data) == sent[5]
    assert memory.topic(source).acked() == set(range(12))
    assert (stats.dead_lettered, stats.published) == (1, 11)


async def test_bytes_that_do_not_parse_are_dead_lettered_alone_the_batch_goes_on(
    topic: Callable[[str], str],
) -> None:
    source = topic("src")
    fill(source, 3)
    memory.topic(source).append(b"not avro at all")
    fill(source, 2)
    operator, out, dead = Tagging(), Recorder(), Recorder()
    block = Block(MemoryListener(source, stop_at_end=True), operator, [out], dead_letter=dead)
    await block.run()
    [letter] = dead.dead_letters
    assert (letter.data, letter.error) == (b"not avro at all", DecodeError.__name__)
    assert [i for i, _ in frames(out)] == [0, 1, 2, 0, 1]
    assert operator.singles == []  # the others still went in one batch
    assert len(out.published) == 9
    assert memory.topic(source).acked() == set(range(10))


async def test_a_batch_call_with_the_wrong_number_of_outputs_falls_back_to_process(
    topic: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    source = topic("src")
    fill(source, 5)

    class Short(Tagging):
        async def process_batch(self, messages: Sequence[Message]) -> list[Output]:
            return (await super().process_batch(messages))[:-1]

    operator, out = Short(), Recorder()
    with caplog.at_level("WARNING", logger="arroyo.block"):
        await Block(MemoryListener(source, stop_at_end=True), operator, [out]).run()
    assert frames(out) == [(i, 0) for i in range(5)]
    assert any("outputs for" in r.getMessage() for r in caplog.records)


async def test_the_operator_timeout_bounds_a_batch_call(topic: Callable[[str], str]) -> None:
    source = topic("src")
    fill(source, 3)

    class Slow(Tagging):
        async def process_batch(self, messages: Sequence[Message]) -> list[Output]:
            await asyncio.Event().wait()  # never returns
            raise AssertionError("unreachable")

    operator, out = Slow(), Recorder()
    block = Block(MemoryListener(source, stop_at_end=True), operator, [out], operator_timeout=0.05)
    await asyncio.wait_for(block.run(), 10)
    assert frames(out) == [(i, 0) for i in range(3)]  # processed again one by one


async def test_with_concurrency_above_one_process_is_used(topic: Callable[[str], str]) -> None:
    source = topic("src")
    fill(source, 6)
    operator, out = Tagging(), Recorder()
    await Block(MemoryListener(source, stop_at_end=True), operator, [out], concurrency=3).run()
    assert operator.batches == []
    assert frames(out) == [(i, 0) for i in range(6)]


async def test_passthrough_forwards_the_bytes_of_a_batch_as_received(
    topic: Callable[[str], str],
) -> None:
    source, sink = topic("src"), topic("dst")
    fill(source, 30)
    await Block(MemoryListener(source, stop_at_end=True), None, [MemoryPublisher(sink)]).run()
    for sent, forwarded in zip(
        memory.topic(source).entries, memory.topic(sink).entries, strict=True
    ):
        assert forwarded is sent


def test_batch_size_must_be_positive(topic: Callable[[str], str]) -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        Block(MemoryListener(topic("src")), batch_size=0)
