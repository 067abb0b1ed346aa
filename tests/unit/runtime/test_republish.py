"""Publishing again (arroyo/runtime/republish.py): how a failed output is retried, on
memory connectors (no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.message import Message
from arroyo.runtime import Block, RetryPolicy
from arroyo.testing import Recorder, make_run


class Down(Recorder):
    """Refuses every output (a destination that is down), counting the attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def publish(self, message: Message) -> None:
        self.attempts += 1
        raise ConnectionError("destination unavailable")


async def test_publish_retry_attempts_count_the_send_that_failed(
    topic: Callable[[str], str],
) -> None:
    """``publish_retry: {attempts: 3}`` sends an output three times in all, as it sends
    a dead letter: the send that failed is attempt 1. It was sent four times (the
    failed send, then three more), and each failure but the last counts a retry."""
    source = topic("src")
    memory.topic(source).put(make_run(1)[0])
    down, dead = Down(), Recorder()
    block = Block(
        MemoryListener(source, stop_at_end=True),
        publishers=[down],
        dead_letter=dead,
        publish_retry=RetryPolicy(attempts=3, initial=0.001, maximum=0.002),
    )
    stats = await asyncio.wait_for(block.run(), 30)
    assert down.attempts == 3
    assert (stats.retried, stats.dead_lettered) == (2, 1)
    assert "destination unavailable" in dead.dead_letters[0].reason
