"""Settling (arroyo/runtime/settle.py): what ``Intake.acknowledged()`` promises a listener,
on memory connectors (no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.message import Message
from arroyo.runtime import Block, Publisher, RetryPolicy
from arroyo.runtime.listener import Intake, Received
from arroyo.runtime.publisher import DeadLetter
from arroyo.testing import make_run


class Slow(MemoryListener):
    """A memory listener that keeps its intake and whose acknowledgements take
    ``turns`` turns of the event loop (as one that waits for its broker)."""

    def __init__(self, name: str, turns: int) -> None:
        super().__init__(name)
        self.turns = turns
        self.intake: Intake | None = None

    async def start(self, intake: Intake) -> None:
        self.intake = intake
        await super().start(intake)

    async def ack_many(self, received: Sequence[Received]) -> list[BaseException | None]:
        for _ in range(self.turns):
            await asyncio.sleep(0)
        return await super().ack_many(received)

    async def acknowledged(self) -> None:
        assert self.intake is not None
        await asyncio.wait_for(self.intake.acknowledged(), 10)


class Held(Publisher):
    """Confirms each output, or publishes it again, only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Message, asyncio.Future[None]]] = []
        self.letters: list[asyncio.Future[None]] = []

    def send(self, message: Message) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        self.pending.append((message, done))
        return done

    async def publish(self, message: Message) -> None:
        await self.send(message)

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        done = asyncio.get_running_loop().create_future()
        self.letters.append(done)
        await done


@pytest.fixture
def topic(unique_name: Callable[[str], str]) -> Any:
    name = unique_name("settle")
    yield memory.topic(name)
    memory.delete(name)


async def started(block: Block, held: Held, sends: int, until: Any) -> asyncio.Task[Any]:
    running = asyncio.create_task(block.run())
    await until(lambda: len(held.pending) >= sends, 10, f"{sends} sends")
    return running


async def test_it_waits_for_the_acknowledgements_of_what_is_confirmed_however_slow(
    topic: Any, until: Any
) -> None:
    """The acknowledgements take 20 turns of the event loop (more than the three a Kafka
    commit used to count): acknowledged() returns once those of the confirmed outputs
    are recorded, and waits for nothing after the first output not confirmed."""
    for message in make_run(3):
        topic.put(message)
    listener, held = Slow(topic.name, turns=20), Held()
    block = Block(listener, None, [held])
    running = await started(block, held, 5, until)
    for _, done in held.pending[:3]:
        done.set_result(None)
    await listener.acknowledged()
    assert listener.group.acked == {0, 1, 2}
    for _, done in held.pending[3:]:
        done.set_result(None)
    await listener.acknowledged()
    assert listener.group.acked == {0, 1, 2, 3, 4}
    block.stop()
    await asyncio.wait_for(running, 10)
    await listener.acknowledged()  # the Block ended: at once


async def test_it_does_not_wait_for_a_dead_letter_that_is_held_back(topic: Any, until: Any) -> None:
    """The dead letter of the second message is held back (as a Kafka transaction holds
    sends while it commits, and the commit waits for acknowledged()): acknowledged()
    returns with the first message acknowledged; the third, confirmed but behind the
    dead letter in input order, is not waited for."""
    first, _, third = make_run(1)
    topic.put(first)
    topic.append(b"not arroyo data")
    topic.put(third)
    listener, held = Slow(topic.name, turns=5), Held()
    block = Block(listener, None, [held], dead_letter=held)
    running = await started(block, held, 2, until)
    await until(lambda: held.letters, 10, "the dead letter sent")
    for _, done in held.pending:
        done.set_result(None)
    await listener.acknowledged()
    assert listener.group.acked == {0}
    held.letters[0].set_result(None)
    await until(lambda: listener.group.acked == {0, 1, 2}, 10, "everything acknowledged")
    block.stop()
    await asyncio.wait_for(running, 10)


async def test_it_does_not_wait_for_a_failed_output_being_published_again(
    topic: Any, until: Any
) -> None:
    """The second output failed and is published again (its new send held back): the
    first message, settled before it, is acknowledged at once, not after the retry."""
    for message in make_run(1):
        topic.put(message)
    listener, held = Slow(topic.name, turns=5), Held()
    block = Block(listener, None, [held], publish_retry=RetryPolicy(None, 0.001, 0.001))
    running = await started(block, held, 3, until)
    held.pending[0][1].set_result(None)
    held.pending[1][1].set_exception(ConnectionError("lost"))
    held.pending[2][1].set_result(None)
    await until(lambda: len(held.pending) == 4, 10, "the failed output sent again")
    await listener.acknowledged()
    assert listener.group.acked == {0}
    held.pending[3][1].set_result(None)
    await until(lambda: listener.group.acked == {0, 1, 2}, 10, "everything acknowledged")
    block.stop()
    await asyncio.wait_for(running, 10)


class Stalled(MemoryListener):
    """A memory listener whose acknowledgements wait until the test lets them through (as
    one whose broker is away)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.through = asyncio.Event()
        self.asked: list[int] = []

    async def ack_many(self, received: Sequence[Received]) -> list[BaseException | None]:
        self.asked.append(len(received))
        await self.through.wait()
        return await super().ack_many(received)


async def test_an_acknowledgement_that_waits_does_not_hold_back_a_retry(
    topic: Any, until: Any
) -> None:
    """The first message's acknowledgement waits (its broker is away) while the second's
    output fails: the output is published again and confirmed meanwhile, and once the
    broker is back, both messages are acknowledged, in order."""
    for message in make_run(0):
        topic.put(message)
    listener, held = Stalled(topic.name), Held()
    block = Block(listener, None, [held], publish_retry=RetryPolicy(None, 0.001, 0.001))
    running = await started(block, held, 2, until)
    held.pending[0][1].set_result(None)
    await until(lambda: listener.asked, 10, "the first acknowledgement asked for")
    held.pending[1][1].set_exception(ConnectionError("lost"))
    await until(lambda: len(held.pending) == 3, 10, "the failed output sent again")
    held.pending[2][1].set_result(None)
    await until(lambda: block.stats.published == 2, 10, "the retry confirmed")
    assert listener.group.acked == set()
    listener.through.set()
    await until(lambda: listener.group.acked == {0, 1}, 10, "both acknowledged")
    assert block.stats.acknowledged == 2
    block.stop()
    await asyncio.wait_for(running, 10)
