"""``hand_over``: a listener's batch goes to the intake together, as far as there is room,
then one by one (the backpressure), until the listener is stopping."""

from __future__ import annotations

import asyncio

from arroyo.runtime.intake import BoundedIntake
from arroyo.runtime.listener import Received, hand_over


def batch(count: int) -> list[Received]:
    return [Received(b"m%d" % i, {"url": "test://", "i": i}) for i in range(count)]


async def test_a_batch_that_fits_is_taken_at_once() -> None:
    intake = BoundedIntake(size=10, max_bytes=1000)
    items = batch(5)
    assert await hand_over(intake, items) == 5
    assert await intake.get_batch(10) == items


async def test_the_rest_waits_for_room_in_order() -> None:
    intake = BoundedIntake(size=2, max_bytes=1000)
    items = batch(4)
    handing = asyncio.create_task(hand_over(intake, items))
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
    handing = asyncio.create_task(hand_over(intake, items, lambda: stopping))
    first = await asyncio.wait_for(intake.get_batch(10), 1)
    assert first == items[:2]
    stopping = True
    intake.done_many(first)  # room for the third, which is waiting already
    assert await asyncio.wait_for(handing, 1) == 3
    assert await hand_over(intake, items[3:], lambda: stopping) == 0
