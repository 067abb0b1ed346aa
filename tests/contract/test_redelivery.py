"""Redelivery, on every broker with acknowledgements (see brokers.py for who meets what).

- What a listener received and did not acknowledge is delivered again to the next
  listener of its group (with a delivery count, where the broker keeps one).
- A worker (``arroyo run``) killed with SIGKILL while it holds a message loses nothing:
  another worker of the group, already running, gets that message and everything after
  it. The worker that dies is the first one that took a marked message: its operator
  waits for ever on it, so the message is in flight, never acknowledged, when the
  worker is killed; only another worker can have published it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from arroyo import Run, encode
from arroyo.brokers import open_listener
from arroyo.testing import Workers, listening, make_run, publish_all
from tests.contract.adapters import Broker
from tests.contract.harness import pipeline, until, worker_env

HOLD_MARKED = '''
import asyncio
import os

from arroyo import Event
from arroyo.runtime import Operator


class HoldMarked(Operator):
    """The first worker to take an Event marked ``hold`` holds it for ever (after writing
    its pid to the file ``holding``); everything else, and the marked Event in any other
    worker, is passed on."""

    async def process(self, message):
        if isinstance(message, Event) and message.metadata.get("hold"):
            try:
                with open("holding", "x") as holding:
                    holding.write(str(os.getpid()))
            except FileExistsError:
                return message
            await asyncio.Event().wait()
        return message
'''


class TestRedelivery:
    concern = "redelivery"

    async def test_what_was_not_acknowledged_is_delivered_again(
        self, broker: Broker, unique_name: Callable[[str], str]
    ) -> None:
        source, group = await broker.source(), unique_name("group")
        await publish_all(broker.publisher_url(source), make_run(3))
        async with listening(open_listener(broker.listener_url(source, group))) as first:
            await until(lambda: len(first.items) == 5, "the run received (not acknowledged)")
        listener = open_listener(broker.listener_url(source, group))
        async with listening(listener) as again:
            await until(lambda: len(again.items) == 5, "the run received again")
            for received in again.items:
                await listener.ack(received)
        assert [bytes(r.data) for r in again.items] == [bytes(r.data) for r in first.items]  # type: ignore[arg-type]
        assert all(r.deliveries == 1 for r in first.items)
        if broker.declared.counts_deliveries:
            assert all(r.deliveries >= 2 for r in again.items)


class TestKilledWorker:
    concern = "killed worker"

    async def test_what_a_killed_worker_held_is_done_by_another(
        self, broker: Broker, unique_name: Callable[[str], str], tmp_path: Path, workers: Workers
    ) -> None:
        source, sink = await broker.source(partitions=2), await broker.destination()
        (tmp_path / "ops.py").write_text(HOLD_MARKED)
        config = pipeline(tmp_path, broker, source, unique_name("group"), "ops:HoldMarked", (sink,))
        first, second = (workers.start(config, env=worker_env(tmp_path)) for _ in range(2))
        run = Run("scan")
        before = [run.event({"i": i}) for i in range(20)]
        held = run.event({"i": 20, "hold": True}, b"the frame in flight")
        after = [run.event({"i": i}) for i in range(21, 40)]
        await broker.write(source, [encode(m) for m in [*before, held, *after]])

        holding = tmp_path / "holding"
        await until(lambda: holding.exists() and holding.read_text(), "a worker holding it")
        victim = first if holding.read_text() == str(first.pid) else second
        survivor = second if victim is first else first
        workers.kill(victim)

        expected = {m.id for m in [*before, held, *after]}

        async def everything() -> bool:
            return {m.id for m in await broker.messages(sink)} >= expected

        await until(everything, "every message at the sink", within=120)
        assert survivor.poll() is None, workers.log(survivor)[-3000:]
        assert workers.stop(survivor) == 0, workers.log(survivor)[-3000:]
        assert victim.returncode == -9
