"""A worker on a RabbitMQ quorum queue is killed (SIGKILL) while it holds a prefetched
batch of unacknowledged messages: the broker gives them to the next worker and nothing is
lost. ``max_deliveries`` counts exactly: the quorum queue counts a delivery more for
every message of the batch (its ``x-delivery-count``), but Arroyo's delivery journal
raises the count only of the message the worker was processing when it died. With
``max_deliveries: 1`` that one message goes to the dead letter ("delivered 2 times"), the
rest of the batch is processed. (Without the journal, ``delivery_journal: false``, the
whole batch of 500 is dead-lettered: the test fails.)

Prints its figures (messages, kills, held by the killed worker, lost, duplicated,
dead-lettered): ``pytest -s`` shows them."""

from __future__ import annotations

import asyncio
import collections
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from arroyo import Run
from arroyo.testing import Workers
from tests.reliability.operators import slow_operator
from tests.reliability.rabbitmq_queues import Sink, produce, ready

pytestmark = pytest.mark.rabbitmq

TOTAL = 1000
QUORUM = {"x-queue-type": "quorum"}


def write_config(folder: Path, amqp_url: str, names: dict[str, str]) -> Path:
    """source (quorum, 500 prefetched) -> 5 ms a message -> sink; the dead letter."""
    operator = slow_operator(folder, 0.005)
    config = folder / "quorum.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            blocks:
              - name: workers
                listener:
                  url: {amqp_url}?queue={names["source"]}
                  queue_type: quorum
                  prefetch: 500
                  delivery_journal: {folder / "journal"}
                operator: {operator}
                publishers:
                  - url: {amqp_url}?queue={names["sink"]}
                dead_letter: {amqp_url}?queue={names["dlq"]}
                max_deliveries: 1
            """
        )
    )
    return config


class Letters:
    """Consumes the dead-letter queue in the background: (message id, reason) of each."""

    def __init__(self, amqp_url: str, queue: str) -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.letters: list[tuple[str, str]] = []
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.amqp_url)
        channel = await self._connection.channel()
        queue = await channel.declare_queue(self.queue, durable=True)

        async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            reason = (message.headers or {}).get("arroyo.dead-letter.reason")
            self.letters.append((str(message.message_id), str(reason)))
            await message.ack()

        await queue.consume(keep)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


async def test_a_worker_killed_holding_unacked_messages_loses_none_and_counts_exactly(
    tmp_path: Path,
    amqp_url: str,
    amqp_names: dict[str, str],
    workers: Workers,
    until: Callable[..., Any],
) -> None:
    config = write_config(tmp_path, amqp_url, amqp_names)
    run = Run("scan-quorum")
    messages = [run.event({"i": i}) for i in range(TOTAL)]
    expected = {m.id for m in messages}
    await produce(amqp_url, amqp_names["source"], messages, **QUORUM)
    sink, dlq = Sink(amqp_url, amqp_names["sink"]), Letters(amqp_url, amqp_names["dlq"])
    await sink.start()
    await dlq.start()
    try:
        first = workers.start(config)
        await until(lambda: len(sink.ids) >= TOTAL // 5, 60, "a fifth through the first worker")
        before = await ready(amqp_url, amqp_names["source"])
        workers.kill(first)
        assert before is not None
        # What it held goes back to the queue once the broker sees its connection close.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (after := await ready(amqp_url, amqp_names["source"]) or 0) <= before:
            assert loop.time() < deadline, "nothing back in the queue 30 s after the kill"
            await asyncio.sleep(0.1)
        held = after - before  # at least this many were held unacknowledged by the dead one
        second = workers.start(config)

        def accounted() -> set[str]:
            return set(sink.ids) | {i for i, _ in dlq.letters}

        await until(lambda: expected <= accounted(), 120, "every message in the sink or dead")
        assert workers.stop(second) == 0, workers.log(second)[-3000:]
    finally:
        await sink.close()
        await dlq.close()
    dead = [i for i, _ in dlq.letters]
    counts = collections.Counter(sink.ids)
    lost = expected - set(counts) - set(dead)
    duplicates = {i: n for i, n in counts.items() if n > 1}
    print(
        f"\nquorum queue: {TOTAL} messages, 1 worker kill, at least {held} held unacknowledged "
        f"by it, lost {len(lost)}, duplicated {len(duplicates)}, dead-lettered {len(dead)}"
    )
    assert held > 1, "the killed worker held no batch: the test proves nothing"
    assert not lost
    # Only the message in the operator when the worker died (none if it died between
    # two), not the whole batch it held.
    assert len(dead) <= 1, dlq.letters
    for _, reason in dlq.letters:
        assert "delivered 2 times" in reason
    assert await ready(amqp_url, amqp_names["source"]) == 0
