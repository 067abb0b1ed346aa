"""``hand_over``: a listener's batch goes to the intake together, as far as there is room,
then one by one (the backpressure), until the listener is stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, cast

from arroyo.runtime.intake import BoundedIntake
from arroyo.runtime.listener import Intake, Received, hand_over


def batch(count: int) -> list[Received]:
    return [Received(b"m%d" % i, {"url": "test://", "i": i}) for i in range(count)]


def over(
    intake: BoundedIntake, items: list[Received], stopping: Callable[[], bool] = lambda: False
) -> Coroutine[Any, Any, int]:
    """``hand_over`` to the Block's bounded intake (the part of the Intake it uses)."""
    return hand_over(cast(Intake, intake), items, stopping)


async def test_a_batch_that_fits_is_taken_at_once() -> None:
    intake = BoundedIntake(size=10, max_bytes=1000)
    items = batch(5)
    assert await over(intake, items) == 5
    assert await intake.get_batch(10) == items


async def test_the_rest_waits_for_room_in_order() -> None:
    intake = BoundedIntake(size=2, max_bytes=1000)
    items = batch(4)
    handing = asyncio.create_task(over(intake, items))
    got: list[Received] = []
    while len(got) < 4:  # each one taken and done makes room for the next
        taken = await asyncio.wait_for(intake.get_batch(10), 1)
        got += taken
        intake.done_many(taken)
    assert await asyncio.wait_for(handing, 1) == 4
    assert got == items


async def test_stopping_hands_no_more_over() -> None:
    intake = BoundedIntake(size=2, max_bytes=1000)
    items = batch(5)
    stopping = False
    handing = asyncio.create_task(over(intake, items, lambda: stopping))
    first = await asyncio.wait_for(intake.get_batch(10), 1)
    assert first == items[:2]
    stopping = True
    intake.done_many(first)  # room for the third, which is waiting already
    assert await asyncio.wait_for(handing, 1) == 3
    assert await over(intake, items[3:], lambda: stopping) == 0


class CountingPuts(BoundedIntake):
    puts = 0

    async def put(self, received: Received) -> bool:
        self.puts += 1
        return await super().put(received)


async def test_after_a_wait_the_rest_goes_in_as_far_as_there_is_room() -> None:
    intake = CountingPuts(size=3, max_bytes=1000)
    items = batch(6)
    handing = asyncio.create_task(over(intake, items))
    first = await asyncio.wait_for(intake.get_batch(10), 1)
    assert first == items[:3]
    intake.done_many(first)  # room for three: the waiting one, then two in one offer
    assert await asyncio.wait_for(handing, 1) == 6
    assert intake.puts == 1
    assert await intake.get_batch(10) == items[3:]
