"""SIGTERM drains a worker, on every broker (see brokers.py).

An ``arroyo run`` worker with a slow operator is stopped with SIGTERM mid-stream: it
stops taking input, finishes what it took (received = published = acknowledged), and
exits 0. On a broker with acknowledgements, a second worker of the group then delivers
exactly the rest: nothing is lost and nothing is delivered twice, so what the first one
acknowledged is exactly what it published. On ZeroMQ (no acknowledgements) the sink has
exactly what the worker received, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from arroyo import Run, encode
from arroyo.testing import Workers
from tests.contract.adapters import Broker
from tests.contract.harness import pipeline, summary, until, worker_env

SLOW = """
import asyncio
from arroyo.runtime import Operator

class Slow(Operator):
    async def process(self, message):
        await asyncio.sleep(0.005)
        return message
"""

TOTAL = 500


class TestDrain:
    concern = "drain"

    async def test_sigterm_finishes_what_was_taken_and_exits_0(
        self, broker: Broker, unique_name: Callable[[str], str], tmp_path: Path, workers: Workers
    ) -> None:
        source, sink = await broker.source(partitions=2), await broker.destination()
        (tmp_path / "ops.py").write_text(SLOW)
        config = pipeline(
            tmp_path, broker, source, unique_name("group"), "ops:Slow", (sink,), queue_size=20
        )
        env = worker_env(tmp_path)
        run = Run("scan")
        sent = [run.event({"i": i}, b"frame %d" % i) for i in range(TOTAL)]

        async def outputs() -> list[str]:
            return [m.id for m in await broker.messages(sink)]

        first = workers.start(config, env=env)
        feeding = asyncio.create_task(broker.write(source, [encode(m) for m in sent]))
        try:
            await until(lambda: _at_least(outputs(), 100), "100 outputs")
            code = await asyncio.to_thread(workers.stop, first)
        finally:
            feeding.cancel()  # ZeroMQ: what the worker did not take is not sent
            await asyncio.gather(feeding, return_exceptions=True)
        log = workers.log(first)
        assert code == 0, log[-3000:]
        assert "stopping: no more input" in log, log[-3000:]
        counts = summary(log)
        assert counts["received"] == counts["published"] == counts["acknowledged"], counts
        done = counts["published"]
        assert 0 < done < TOTAL, f"SIGTERM did not come mid-stream: {counts}"
        if not broker.declared.acknowledges:
            found = await until(lambda: _at_least(outputs(), done), "what the worker published")
            assert found == [m.id for m in sent[:done]]
            return
        second = workers.start(config, env=env)
        await until(
            lambda: _at_least(outputs(), TOTAL, {m.id for m in sent}), "the rest", within=120
        )
        code = await asyncio.to_thread(workers.stop, second)
        log = workers.log(second)
        assert code == 0, log[-3000:]
        assert done + summary(log)["published"] == TOTAL, "something was processed twice"


async def _at_least(
    ids: Awaitable[list[str]], count: int, every: set[str] | None = None
) -> list[str] | None:
    """The ids when there are at least ``count`` of them (and ``every`` one among them)."""
    found = await ids
    if len(found) < count or (every is not None and not every <= set(found)):
        return None
    return found
