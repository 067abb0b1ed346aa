"""Dead letters (arroyo/runtime/deadletters.py): how a failed dead letter is retried, on
memory connectors (no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.runtime import Block, RetryPolicy
from arroyo.runtime.publisher import DeadLetter
from arroyo.testing import Recorder


class Flaky(Recorder):
    """A dead-letter destination that refuses its first ``failures`` dead letters."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("dead-letter destination unavailable")
        await super().publish_dead_letter(letter)


async def test_a_dead_letter_sent_again_once_counts_one_retry(
    topic: Callable[[str], str],
) -> None:
    """The dead letter's first send fails, the second is taken: one retry. It counted
    two (the failure was noted once before the retries and once more as their first)."""
    source = topic("src")
    memory.topic(source).append(b"not an arroyo message")
    dead = Flaky(failures=1)
    block = Block(
        MemoryListener(source, stop_at_end=True),
        dead_letter=dead,
        publish_retry=RetryPolicy(attempts=3, initial=0.001, maximum=0.002),
    )
    stats = await asyncio.wait_for(block.run(), 30)
    assert (stats.retried, stats.dead_lettered) == (1, 1)
    assert len(dead.dead_letters) == 1
