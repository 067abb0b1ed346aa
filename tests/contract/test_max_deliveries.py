"""A message that kills its worker by a signal (as a segfault in compiled code does) is
dead-lettered after ``max_deliveries``, and every other message is delivered, on every
broker that redelivers (see brokers.py).

An ``arroyo run`` worker's operator sends itself SIGSEGV on one marked Event, in the
middle of interleaved runs already waiting when the worker starts (so its neighbours
are in flight with it each time). The test starts the worker again each time it dies,
as a supervisor would, a bounded number of times: the first ``max_deliveries`` workers
die on the poison, the next one dead-letters it, saying it was delivered
``max_deliveries + 1`` times and kept crashing workers. Messages written after that go
through too.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from arroyo import Run, encode
from arroyo.message import Message
from arroyo.testing import Workers
from tests.contract.adapters import Broker
from tests.contract.harness import pipeline, until, worker_env

MAX_DELIVERIES = 2
WORKERS_AT_MOST = MAX_DELIVERIES + 3
"""The test gives up (and fails) when this many workers died on the poison."""

SEGFAULT_ON_POISON = '''
import os
import signal

from arroyo import Event
from arroyo.runtime import Operator


class SegfaultOnPoison(Operator):
    """Kills the worker with SIGSEGV on an Event marked poison, as a crash in compiled
    code does; passes everything else on."""

    async def process(self, message):
        if isinstance(message, Event) and message.metadata.get("poison"):
            os.kill(os.getpid(), signal.SIGSEGV)
        return message
'''


def stream_with_poison() -> tuple[list[Message], Message]:
    """Three runs of 20 Events, interleaved; the poison is the 11th Event of the second
    run. Returns (every message in the order written, the poison)."""
    runs = [Run(f"scan-{i}") for i in range(3)]
    messages: list[Message] = []
    poison: Message | None = None
    for i in range(20):
        for r, run in enumerate(runs):
            if r == 1 and i == 10:
                poison = run.event({"i": i, "poison": True}, b"frame that kills")
                messages.append(poison)
            else:
                messages.append(run.event({"i": i}, b"frame %d" % i))
    assert poison is not None
    return messages, poison


class TestMaxDeliveries:
    concern = "max_deliveries"

    async def test_a_message_that_keeps_killing_workers_is_dead_lettered(
        self, broker: Broker, unique_name: Callable[[str], str], tmp_path: Path, workers: Workers
    ) -> None:
        source, sink, dead = (
            await broker.source(),
            await broker.destination(),
            await broker.destination("dead"),
        )
        (tmp_path / "ops.py").write_text(SEGFAULT_ON_POISON)
        config = pipeline(
            tmp_path,
            broker,
            source,
            unique_name("group"),
            "ops:SegfaultOnPoison",
            (sink,),
            dead,
            max_deliveries=MAX_DELIVERIES,
            grace_period=10,
        )
        env = worker_env(tmp_path)  # the workers share a delivery journal of their own
        messages, poison = stream_with_poison()
        where = await broker.write(source, [encode(m) for m in messages])
        poison_at = where[messages.index(poison)]

        crashes: list[int] = []
        worker = workers.start(config, env=env)
        while True:
            await until(
                lambda w=worker: w.poll() is not None or broker.letters(dead),
                "a crash or the dead letter",
            )
            if worker.poll() is None:
                break
            crashes.append(worker.returncode)
            assert len(crashes) < WORKERS_AT_MOST, (
                f"{len(crashes)} workers died and the poison is not dead-lettered yet; the "
                f"last one's log:\n{workers.log(worker)[-3000:]}"
            )
            worker = workers.start(config, env=env)
        assert crashes == [-signal.SIGSEGV] * MAX_DELIVERIES, workers.log(worker)[-3000:]

        later = [Run("scan-later").event({"i": i}) for i in range(5)]
        await broker.write(source, [encode(m) for m in later])
        expected = {m.id for m in messages + later if m is not poison}

        async def everything_else() -> bool:
            return {m.id for m in await broker.messages(sink)} >= expected

        await until(everything_else, "every other message at the sink")
        assert workers.stop(worker) == 0, workers.log(worker)[-3000:]
        [(data, headers)] = await broker.letters(dead)
        assert data == encode(poison)
        assert broker.where(headers) == poison_at
        reason = headers["arroyo.dead-letter.reason"]
        assert f"delivered {MAX_DELIVERIES + 1} times" in reason, reason
        assert "crashing workers" in reason, reason
        assert poison.id not in {m.id for m in await broker.messages(sink)}
