"""Faults in a Block fail loudly and in bounded time (memory connectors, no broker; the
broker tests are tests/reliability/test_redis_faults.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.errors import MessageTooLargeError, PermanentError
from arroyo.message import Event, Message
from arroyo.runtime import Block, BlockingOperator, Operator, Output, Publisher, RetryPolicy
from arroyo.runtime.deadletters import DeadLetterFailed
from arroyo.runtime.publisher import DeadLetter
from arroyo.testing import Recorder, make_run

FAST = RetryPolicy(attempts=2, initial=0.001, maximum=0.002)
Until = Callable[..., Any]


@pytest.fixture
def source(unique_name: Callable[[str], str]) -> Iterator[str]:
    name = unique_name("src")
    yield name
    memory.delete(name)


def fill(name: str, count: int) -> list[Message]:
    messages = make_run(count)
    for message in messages:
        memory.topic(name).put(message)
    return messages


class Refusing(Recorder):
    """A dead-letter destination that refuses for good (a key of the wrong type)."""

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        raise PermanentError("WRONGTYPE Operation against a key holding the wrong kind of value")


async def test_a_dead_letter_not_taken_stops_the_block_and_acks_only_what_came_before(
    source: str,
) -> None:
    memory.topic(source).put(Event(metadata={"i": 0}))
    memory.topic(source).append(b"garbage")
    memory.topic(source).put(Event(metadata={"i": 2}))
    block = Block(MemoryListener(source), dead_letter=Refusing(), publishers=[Recorder()])
    with pytest.raises(DeadLetterFailed, match="WRONGTYPE"):
        await asyncio.wait_for(block.run(), 10)  # it used to run on, acknowledging nothing
    assert memory.topic(source).acked() == {0}


async def test_dead_letters_are_in_flight_together(source: str, until: Until) -> None:
    for i in range(50):
        memory.topic(source).append(b"garbage %d" % i)
    in_flight = peak = 0
    release = asyncio.Event()

    class Slow(Recorder):
        async def publish_dead_letter(self, letter: DeadLetter) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await release.wait()
            in_flight -= 1
            await super().publish_dead_letter(letter)

    dead = Slow()
    block = Block(MemoryListener(source, stop_at_end=True), dead_letter=dead)
    running = asyncio.create_task(block.run())
    await until(lambda: peak == 50 or running.done(), what="every dead letter in flight")
    release.set()
    stats = await asyncio.wait_for(running, 10)
    assert peak == 50  # not one round trip per dead letter
    assert stats.dead_lettered == len(dead.dead_letters) == 50
    assert memory.topic(source).acked() == set(range(50))


async def test_a_repeated_error_is_logged_once_with_a_count(
    source: str, caplog: pytest.LogCaptureFixture
) -> None:
    fill(source, 1000)

    class TooSmall(Recorder):
        async def publish(self, message: Message) -> None:
            if isinstance(message, Event):
                raise MessageTooLargeError("frame exceeds message.max.bytes=1000000")
            await super().publish(message)

    with caplog.at_level(logging.INFO, logger="arroyo"):
        stats = await Block(MemoryListener(source, stop_at_end=True), publishers=[TooSmall()]).run()
    lines = [r.getMessage() for r in caplog.records]
    refused = [line for line in lines if "could not publish" in line]
    dropped = [line for line in lines if "dropped a bad message" in line]
    assert 1 <= len(refused) <= 3 and 1 <= len(dropped) <= 3  # not 1,000 of each
    assert "like it in the last" in refused[-1] and "like it in the last" in dropped[-1]
    assert (stats.published, stats.dropped, stats.acknowledged) == (2, 1000, 1002)
    assert lines[-1].startswith(
        "stopped: 1002 received, 2 published, 1002 acknowledged, 0 dead-lettered, "
        "1000 dropped, 0 retried"
    )


async def test_an_operator_timeout_fails_the_call(source: str) -> None:
    sent = fill(source, 4)

    class Hangs(Operator):
        async def process(self, message: Message) -> Output:
            if message.seq == 2:
                await asyncio.Event().wait()
            return message

    out, dead = Recorder(), Recorder()
    block = Block(
        MemoryListener(source, stop_at_end=True),
        Hangs(),
        [out],
        dead_letter=dead,
        retry=FAST,
        operator_timeout=0.05,
    )
    await asyncio.wait_for(block.run(), 10)
    assert out.published == [m for m in sent if m.seq != 2]
    [letter] = dead.dead_letters
    assert (letter.error, letter.attempts) == ("OperatorTimeout", 2)
    assert "did not return within its timeout of 0.05 s" in letter.reason


async def test_a_call_running_longer_than_hung_after_is_logged(
    source: str, caplog: pytest.LogCaptureFixture, until: Until
) -> None:
    fill(source, 1)
    release = asyncio.Event()

    class Slow(Operator):
        async def process(self, message: Message) -> Output:
            if message.seq == 1:
                await release.wait()
            return message

    block = Block(MemoryListener(source, stop_at_end=True), Slow(), hung_after=0.05)
    running = asyncio.create_task(block.run())
    await until(lambda: "hung?" in caplog.text, what="the hung call logged")
    release.set()
    await asyncio.wait_for(running, 10)
    assert "the operator has been running for 0 s on event" in caplog.text


async def test_an_operator_raising_cancelled_error_is_a_failure(source: str) -> None:
    sent = fill(source, 3)

    class Cancels(Operator):
        async def process(self, message: Message) -> Output:
            if message.seq == 1:
                raise asyncio.CancelledError
            return message

    out, dead = Recorder(), Recorder()
    for concurrency in (1, 3):
        memory.delete(source)
        fill(source, 3)
        out.published.clear()
        dead.dead_letters.clear()
        block = Block(
            MemoryListener(source, stop_at_end=True),
            Cancels(),
            [out],
            dead_letter=dead,
            retry=FAST,
            concurrency=concurrency,
        )
        await asyncio.wait_for(block.run(), 10)
        assert [m.seq for m in out.published] == [m.seq for m in sent if m.seq != 1]
        assert [letter.error for letter in dead.dead_letters] == ["OperatorCancelled"]


async def test_the_grace_period_bounds_a_stop_with_a_hung_blocking_operator(
    source: str, until: Until
) -> None:
    fill(source, 3)
    hang = threading.Event()  # set at the end: the thread is not left behind in pytest
    hung: list[threading.Thread] = []

    class HangsInCompute(BlockingOperator):
        def compute(self, message: Message) -> Output:
            if message.seq == 1:
                hung.append(threading.current_thread())
                hang.wait()
            return message

    block = Block(MemoryListener(source), HangsInCompute(), [Recorder()], grace_period=0.2)
    running = asyncio.create_task(block.run())
    try:
        await until(lambda: block.stats.acknowledged == 1)
        block.stop()
        await asyncio.wait_for(running, 10)  # closing used to wait for the thread
    finally:
        hang.set()
        for thread in hung:  # it logs as it ends: within the test, not into a closed capture
            thread.join(10)
    assert not any(thread.is_alive() for thread in hung)
    assert block.abandoned == 4  # seq 1 (hung) and the three behind it
    assert memory.topic(source).acked() == {0}


async def test_abort_stops_at_once(source: str, until: Until) -> None:
    fill(source, 3)

    class Stuck(Operator):
        async def process(self, message: Message) -> Output:
            if message.seq == 1:
                await asyncio.Event().wait()
            return message

    block = Block(MemoryListener(source), Stuck(), [Recorder()], grace_period=600)
    running = asyncio.create_task(block.run())
    await until(lambda: block.stats.acknowledged == 1)
    block.stop()
    block.abort()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 10)  # not after 600 s


class Held(Publisher):
    """Confirms (or fails) only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []

    def send(self, message: Message) -> asyncio.Future[None]:
        self.pending.append(asyncio.get_running_loop().create_future())
        return self.pending[-1]

    async def publish(self, message: Message) -> None:
        await self.send(message)


async def test_sends_failing_after_the_block_ended_raise_no_warning_storm(
    source: str, until: Until, caplog: pytest.LogCaptureFixture
) -> None:
    fill(source, 20)
    held = Held()
    block = Block(MemoryListener(source), publishers=[held], grace_period=0.05)
    running = asyncio.create_task(block.run())
    await until(lambda: len(held.pending) == 22)
    block.stop()
    await asyncio.wait_for(running, 10)
    for sent in held.pending:
        if not sent.done():
            sent.set_exception(ConnectionError("destination down"))
    held.pending.clear()
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
