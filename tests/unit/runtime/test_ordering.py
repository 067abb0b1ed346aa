"""Outputs keep input order when a publish fails and is retried (no broker: the broker
test is tests/reliability/test_redis_recovery.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.errors import PublishError
from arroyo.message import Message
from arroyo.runtime import Block, PipelinedPublisher, Publisher, RetryPolicy
from arroyo.runtime.metrics import BlockStats
from arroyo.runtime.ordering import FailStop, NotSent
from arroyo.testing import Recorder, make_run

QUICK = RetryPolicy(None, 0.001, 0.002)


class Flaky(Recorder):
    """Refuses its first ``failures`` publishes (as a destination that is down), then
    keeps what it is given, in the order it was written."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def publish(self, message: Message) -> None:
        await asyncio.sleep(0)  # a round trip: sends given meanwhile wait behind
        if self.failures > 0:
            self.failures -= 1
            raise PublishError("destination unavailable")
        await super().publish(message)


class Reconnecting(PipelinedPublisher):
    """A pipelined destination whose connection drops after ``drop_at`` writes and comes
    back ``down`` sends later: what is written while it is down fails. With ``fail_stop``,
    the sends given behind a failure are not written (FailStop), as the brokers' are."""

    def __init__(self, drop_at: int, down: int, fail_stop: bool) -> None:
        self.written: list[Message] = []
        self.drop_at, self.down = drop_at, down
        self.fail_stop = FailStop("test") if fail_stop else None
        self._queue: list[tuple[Message, asyncio.Future[None]]] = []
        self._attempts = 0

    def send(self, message: Message) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_stop is not None and not self.fail_stop.given():
            done.set_exception(self.fail_stop.not_sent())
            return done
        self._queue.append((message, done))
        if len(self._queue) == 1:
            asyncio.get_running_loop().call_soon(self._write)
        return done

    def _write(self) -> None:
        """Write what is queued, one per loop turn (a pipelined connection)."""
        message, done = self._queue.pop(0)
        error: BaseException | None = None
        if self.fail_stop is not None and not self.fail_stop.writable():
            error = self.fail_stop.not_sent()
        else:
            self._attempts += 1
            if self.drop_at <= self._attempts < self.drop_at + self.down:
                error = PublishError("connection lost")
            else:
                self.written.append(message)
        if self.fail_stop is not None:
            self.fail_stop.completed(error)
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
        if self._queue:
            asyncio.get_running_loop().call_soon(self._write)


class Unplugged(PipelinedPublisher):
    """A pipelined destination that refuses its ``refuse_at``-th send at once (raises: its
    connection is being made again), then writes everything it is given at once."""

    def __init__(self, refuse_at: int) -> None:
        self.written: list[Message] = []
        self.refuse_at = refuse_at
        self._given = 0

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        self._given += 1
        if self._given == self.refuse_at:
            raise PublishError("not connected")
        self.written.append(message)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def relay(source: str, destination: Publisher) -> BlockStats:
    """Run a Block from memory topic ``source`` (deleted after) to ``destination``."""
    try:
        block = Block(
            MemoryListener(source, stop_at_end=True),
            publishers=[destination],
            publish_retry=QUICK,
        )
        return await block.run()
    finally:
        memory.delete(source)


def fill(name: str, count: int) -> list[Message]:
    messages = make_run(count)
    for message in messages:
        memory.topic(name).put(message)
    return messages


async def test_a_publisher_that_fails_then_recovers_gets_everything_in_order(
    unique_name: Callable[[str], str],
) -> None:
    source = unique_name("src")
    sent = fill(source, 50)
    flaky = Flaky(failures=7)
    stats = await relay(source, flaky)
    assert flaky.published == sent  # in order, not only complete
    assert stats.retried == 7  # the sends held back behind the failure are no retries


async def test_what_follows_a_send_refused_at_once_in_a_batch_waits_for_it(
    unique_name: Callable[[str], str],
) -> None:
    """The outputs of a batch go to the publisher in one send_many call; when the 10th
    is refused at once, the publisher takes no more of the batch and the rest is held
    back until the 10th is published again: written in order."""
    source = unique_name("src")
    sent = fill(source, 50)
    destination = Unplugged(refuse_at=10)
    stats = await relay(source, destination)
    assert destination.written == sent
    assert stats.retried == 1


async def test_sends_in_flight_behind_a_failure_do_not_overtake_it(
    unique_name: Callable[[str], str],
) -> None:
    source = unique_name("src")
    sent = fill(source, 200)
    destination = Reconnecting(drop_at=20, down=15, fail_stop=True)
    stats = await relay(source, destination)
    first: list[str] = []
    for message in destination.written:
        if message.id not in first:
            first.append(message.id)
    assert first == [m.id for m in sent]  # first occurrences in input order
    assert stats.published == len(sent)


async def test_without_fail_stop_a_publisher_would_reorder(
    unique_name: Callable[[str], str],
) -> None:
    """Why publishers must be fail-stop: the runtime alone cannot stop what was given
    to a publisher before the failure was known (this is the broken case, on purpose)."""
    source = unique_name("src")
    sent = fill(source, 200)
    destination = Reconnecting(drop_at=20, down=3, fail_stop=False)
    try:
        await Block(
            MemoryListener(source, stop_at_end=True),
            publishers=[destination],
            publish_retry=QUICK,
        ).run()
    finally:
        memory.delete(source)
    assert sorted(m.id for m in destination.written) == sorted(m.id for m in sent)
    assert [m.id for m in destination.written] != [m.id for m in sent]


def test_fail_stop_refuses_what_is_given_behind_a_failure_until_it_drained() -> None:
    state = FailStop("redis://h:1/out")
    assert state.given() and state.given()  # two outstanding
    state.completed(PublishError("connection lost"))
    assert not state.writable()  # the second one must not be written now
    assert not state.given()  # nor a third, given while the second is outstanding
    assert isinstance(state.not_sent(), NotSent)
    assert "redis://h:1/out: not sent" in str(state.not_sent())
    state.completed(state.not_sent())  # the second one failed unwritten
    assert state.given()  # everything before it completed: the caller knows, go on
    assert state.writable()
