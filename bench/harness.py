"""Timing an Arroyo Block from inside, without changing what it does.

The Block's listener gets its ``ack`` wrapped (an instance attribute over the method):
the Block acknowledges a message only after every publisher confirmed its outputs, so
the time of the ``ack`` call is the moment the output was confirmed. A message's
latency is that moment minus ``Received.received_at`` (when the listener took it from
the client library). In exactly-once mode the outputs count only once their
transaction is committed: the transaction's ``commit`` is wrapped too, and a message's
moment is the end of the first commit after its acknowledgement.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Sequence
from typing import Any

from arroyo.runtime import Block
from arroyo.runtime.listener import Received
from arroyo.runtime.parser import AvroParser
from bench.common import Timing


async def measure_block(block: Block, count: int, *, transactions: Any = None) -> Timing:
    """Run ``block`` until ``count`` source messages are acknowledged (and, with
    ``transactions``, committed), then stop it. The time runs from the first message the
    listener took to the last confirmation (the Block's start-up and shutdown are not
    counted)."""
    listener = block.listener
    original = listener.ack_many
    taken: list[float] = []
    acked: list[float] = []
    commits: list[float] = []
    enough = asyncio.Event()

    async def ack_many(batch: Sequence[Received]) -> list[BaseException | None]:
        results = await original(batch)
        now = time.monotonic()
        for received, error in zip(batch, results, strict=True):
            if error is None:
                acked.append(now)
                taken.append(received.received_at)
        if len(acked) >= count and transactions is None:
            enough.set()
            block.stop()
        return results

    listener.ack_many = ack_many  # type: ignore[method-assign,assignment]
    if transactions is not None:
        commit = transactions.commit

        async def timed_commit(*args: Any, **kwargs: Any) -> Any:
            result = await commit(*args, **kwargs)
            commits.append(time.monotonic())
            if len(acked) >= count and commits[-1] > acked[count - 1]:
                enough.set()
            return result

        transactions.commit = timed_commit
    run = asyncio.create_task(block.run())
    wait = asyncio.create_task(enough.wait())
    await asyncio.wait({run, wait}, return_when=asyncio.FIRST_COMPLETED)
    block.stop()
    stats = await run
    wait.cancel()
    if len(acked) < count:
        raise RuntimeError(f"the Block ended after {len(acked)} of {count} messages: {stats}")
    if transactions is None:
        done = acked[:count]
    elif not commits or commits[-1] < acked[count - 1]:
        raise RuntimeError("the Block ended before the last transaction was committed")
    else:
        done = [commits[bisect.bisect_left(commits, t)] for t in acked[:count]]
    began = min(taken[:count])
    latencies = [d - t for d, t in zip(done, taken, strict=False)]
    return Timing(count, max(done) - began, latencies)


def block_parser(lazy: bool) -> AvroParser | None:
    """The parser of a Block variant's listener: ``check: lazy``'s (framing and identity
    read, the rest when something reads it), or None, the listener's default (the full
    check)."""
    from arroyo.codec import Codec

    return AvroParser(Codec(lazy=True)) if lazy else None
