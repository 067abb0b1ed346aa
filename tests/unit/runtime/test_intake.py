"""The Block's bounded intake: counts and bytes, backpressure, closing."""

from __future__ import annotations

import asyncio

from arroyo.runtime.intake import BoundedIntake
from arroyo.runtime.listener import Received


def item(size: int = 10) -> Received:
    return Received(b"x" * size, {"url": "test://"})


async def test_put_waits_for_room_and_done_frees_it() -> None:
    intake = BoundedIntake(size=2, max_bytes=1000)
    first, second, third = item(), item(), item()
    assert intake.offer(first)
    await intake.put(second)
    assert intake.full()
    assert not intake.offer(third)
    waiting = asyncio.create_task(intake.put(third))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert await intake.get() is first
    assert not waiting.done()  # taken out of the queue is not done: still held
    intake.done(first)
    assert await asyncio.wait_for(waiting, 1) is True
    assert intake.peak == 2


async def test_bytes_bound_admits_one_oversized_message_alone() -> None:
    intake = BoundedIntake(size=100, max_bytes=100)
    big, small = item(500), item(10)
    assert intake.offer(big)
    assert not intake.offer(small)
    intake.done(big)
    assert intake.offer(small)


async def test_close_refuses_new_messages_and_drains_the_rest() -> None:
    intake = BoundedIntake(size=1, max_bytes=1000)
    queued, late = item(), item()
    assert intake.offer(queued)
    blocked = asyncio.create_task(intake.put(late))
    await asyncio.sleep(0)
    intake.close()
    assert await asyncio.wait_for(blocked, 1) is False  # not queued: never acknowledged
    assert await intake.get() is queued
    assert await intake.get() is None


async def test_a_batch_is_offered_as_far_as_it_fits_and_done_together() -> None:
    """offer_many takes the first of a batch, in order, up to the count and bytes bounds
    (as offer() for each); done_many frees their room and wakes as many waiting puts."""
    intake = BoundedIntake(size=4, max_bytes=35)
    batch = [item(10) for _ in range(5)]
    assert intake.offer_many(batch) == 3  # the 4th would pass 35 bytes
    assert intake.held == 3 and intake.held_bytes == 30
    late = [asyncio.create_task(intake.put(each)) for each in batch[3:]]
    await asyncio.sleep(0)
    assert await intake.get_batch(10) == batch[:3]
    intake.done_many(batch[:3])
    assert await asyncio.wait_for(asyncio.gather(*late), 1) == [True, True]
    assert intake.held == 2 and intake.peak == 3
    intake.close()
    assert intake.offer_many([item()]) == 0


async def test_hand_back_takes_the_waiting_matches_in_order_and_frees_their_room() -> None:
    """What is being processed already stays; what waits and matches leaves the queue, in
    order, with its room (a put waiting for room goes in); the rest keeps its order."""
    intake = BoundedIntake(size=5, max_bytes=1000)
    items = [Received(b"x" * 10, {"url": "test://"}, ("p", i % 2)) for i in range(5)]
    assert intake.offer_many(items) == 5
    assert await intake.get() is items[0]  # being processed: not handed back
    late = Received(b"y", {"url": "test://"}, ("p", 0))
    waiting = asyncio.create_task(intake.put(late))
    await asyncio.sleep(0)
    assert not waiting.done()
    back = intake.hand_back(lambda received: received.handle[1] == 0)
    assert back == [items[2], items[4]]
    assert (intake.held, intake.held_bytes, intake.depth) == (3, 30, 2)
    assert await asyncio.wait_for(waiting, 1) is True
    assert await intake.get_batch(10) == [items[1], items[3], late]
    assert intake.hand_back(lambda received: True) == []
