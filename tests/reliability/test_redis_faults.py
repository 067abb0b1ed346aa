"""Faults inside a worker (``arroyo run`` processes on Redis Streams) stop it loudly, and in
bounded time, never silently.

- A dead-letter destination that refuses for good (a Redis key of the wrong type) stops
  the worker with a clear error and exit 1; what came before the bad message is
  acknowledged, the bad message and what follows it are not (redelivered later).
- A BlockingOperator whose compute() never returns: SIGTERM ends the worker within the
  grace period (and a small margin), the unfinished message stays unacknowledged and
  another worker processes it; a second SIGTERM ends it at once; with the operator's
  ``timeout`` the call fails and its message is dead-lettered while the rest flows.
- An async operator that hangs is named in the log when the grace period ends.
- An operator that raises asyncio.CancelledError has failed: its message is
  dead-lettered and the rest is processed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from arroyo import Run
from arroyo.brokers import open_listener, open_publisher
from arroyo.message import Message
from arroyo.runtime import Block, Operator, Output, RetryPolicy
from arroyo.testing import Workers
from tests.reliability.redis_pipelines import produce
from tests.reliability.redis_pipelines import write_config as redis_config

Until = Callable[..., Any]
pytestmark = pytest.mark.redis

HANGING = '''
import asyncio
import threading

from arroyo import Event
from arroyo.runtime import BlockingOperator, Operator


class HangsInCompute(BlockingOperator):
    """compute() never returns on an Event marked hang."""

    def compute(self, message):
        if isinstance(message, Event) and message.metadata.get("hang"):
            print("compute hangs on", message.id, flush=True)
            threading.Event().wait()
        return message


class HangsInProcess(Operator):
    """process() never returns on an Event marked hang."""

    async def process(self, message):
        if isinstance(message, Event) and message.metadata.get("hang"):
            print("process hangs on", message.id, flush=True)
            await asyncio.Event().wait()
        return message
'''


def write_config(
    folder: Path, redis_address: str, names: dict[str, str], grace: float = 10, **block: Any
) -> Path:
    """The Redis pipeline of :mod:`tests.reliability.redis_pipelines`, with hanging.py
    (:data:`HANGING`) next to it."""
    (folder / "hanging.py").write_text(HANGING)
    return redis_config(folder, redis_address, names, grace, **block)


def ids(redis_client: redis.Redis, stream: str) -> list[str]:
    """The message ids in ``stream``, in order."""
    return [fields[b"id"].decode() for _, fields in redis_client.xrange(stream)]


def pending_ids(redis_client: redis.Redis, stream: str, group: str = "workers") -> set[bytes]:
    """The entries of ``group`` that were delivered and not acknowledged."""
    return {p["message_id"] for p in redis_client.xpending_range(stream, group, "-", "+", 1000)}


async def exits(process: subprocess.Popen[bytes], within: float, until: Until) -> int:
    """The exit code of ``process``, which must exit by itself within ``within`` s."""
    await until(lambda: process.poll() is not None, within=within, what="the worker exits")
    assert process.returncode is not None
    return process.returncode


async def test_a_dead_letter_destination_that_refuses_stops_the_worker_loudly(
    tmp_path: Path,
    redis_address: str,
    redis_client: redis.Redis,
    redis_names: dict[str, str],
    workers: Workers,
    until: Until,
) -> None:
    source = redis_names["source"]
    redis_client.set(redis_names["dlq"], "a string, not a stream")  # XADD: WRONGTYPE
    run = Run("scan-dlq")
    before = [run.event({"i": i}) for i in range(5)]
    after = [run.event({"i": i}) for i in range(5, 10)]
    before_ids = produce(redis_client, source, before)
    bad = redis_client.xadd(source, {"data": b"GARBAGE, not Avro at all"})
    after_ids = produce(redis_client, source, after)

    worker = workers.start(write_config(tmp_path, redis_address, redis_names))
    assert await exits(worker, 60, until) == 1, workers.log(worker)
    log = workers.log(worker)
    assert "WRONGTYPE" in log, log
    assert f"dead-letter destination redis://{redis_address}/{redis_names['dlq']}" in log
    assert "stopping: this message and those after it are left unacknowledged" in log
    assert "block workers failed" in log
    pending = pending_ids(redis_client, source)
    assert bad in pending and set(after_ids) <= pending  # redelivered after a restart
    assert not set(before_ids) & pending  # the work before it was acknowledged


async def test_sigterm_ends_a_hung_compute_within_the_grace_period(
    tmp_path: Path,
    redis_address: str,
    redis_client: redis.Redis,
    redis_names: dict[str, str],
    workers: Workers,
    until: Until,
) -> None:
    grace = 2
    config = write_config(
        tmp_path, redis_address, redis_names, grace, operator="hanging:HangsInCompute"
    )
    run = Run("scan-hang")
    stuck = run.event({"i": 0, "hang": True})
    [stuck_entry] = produce(redis_client, redis_names["source"], [stuck])
    worker = workers.start(config)
    await until(lambda: "compute hangs on" in workers.log(worker), within=60)

    worker.send_signal(signal.SIGTERM)
    began = time.monotonic()
    # Bounded by grace + CLOSE_TIMEOUT + EXIT_MARGIN at worst (the watchdog); it used
    # to run for ever. The bound is generous: the machine is shared.
    code = await exits(worker, grace + 40, until)
    log = workers.log(worker)
    print(f"exited {time.monotonic() - began:.1f} s after SIGTERM with {code}")
    assert code == 0, log
    assert "grace period of 2.0 s is over: 1 messages left unacknowledged" in log
    assert f"abandoned the operator's call on event {stuck.id}" in log
    assert stuck_entry in pending_ids(redis_client, redis_names["source"])

    # Redelivered: another worker, whose compute does not hang, publishes it.
    (tmp_path / "hanging.py").write_text(HANGING.replace('get("hang")', 'get("never")'))
    second = workers.start(config)
    await until(
        lambda: stuck.id in ids(redis_client, redis_names["sink"]),
        within=60,
        what="the message redelivered",
    )
    assert workers.stop(second) == 0, workers.log(second)


async def test_a_second_sigterm_stops_at_once(
    tmp_path: Path,
    redis_address: str,
    redis_client: redis.Redis,
    redis_names: dict[str, str],
    workers: Workers,
    until: Until,
) -> None:
    config = write_config(
        tmp_path, redis_address, redis_names, 600, operator="hanging:HangsInCompute"
    )
    stuck = Run("scan-twice").event({"i": 0, "hang": True})
    produce(redis_client, redis_names["source"], [stuck])
    worker = workers.start(config)
    await until(lambda: "compute hangs on" in workers.log(worker), within=60)
    worker.send_signal(signal.SIGTERM)
    await until(lambda: "stopping gracefully" in workers.log(worker), within=30)
    worker.send_signal(signal.SIGTERM)
    # Far less than the grace period of 600 s.
    code = await exits(worker, 30, until)
    log = workers.log(worker)
    assert code != 0, log
    assert "again: stopping now" in log
    assert stuck.id not in ids(redis_client, redis_names["sink"])


async def test_an_operator_timeout_dead_letters_the_call_that_hangs(
    tmp_path: Path,
    redis_address: str,
    redis_client: redis.Redis,
    redis_names: dict[str, str],
    workers: Workers,
    until: Until,
) -> None:
    config = write_config(
        tmp_path,
        redis_address,
        redis_names,
        5,
        operator='{class: "hanging:HangsInCompute", timeout: 0.5}',
        retry="{attempts: 2, initial: 0.01, maximum: 0.02}",
    )
    run = Run("scan-timeout")
    messages = [run.event({"i": i, "hang": i == 3}) for i in range(8)]
    entries = produce(redis_client, redis_names["source"], messages)
    worker = workers.start(config)
    others = [m.id for m in messages if not m.metadata["hang"]]
    await until(
        lambda: set(ids(redis_client, redis_names["sink"])) >= set(others),
        within=60,
        what="the other messages",
    )
    await until(lambda: redis_client.xlen(redis_names["dlq"]) == 1, within=30)
    assert workers.stop(worker, timeout=30) == 0, workers.log(worker)

    [(_, letter)] = redis_client.xrange(redis_names["dlq"])
    assert letter[b"arroyo.dead-letter.error"] == b"OperatorTimeout"
    assert b"did not return within its timeout of 0.5 s" in letter[b"arroyo.dead-letter.reason"]
    assert letter[b"arroyo.dead-letter.attempts"] == b"2"
    assert letter[b"arroyo.source.entry"] == entries[3]
    assert ids(redis_client, redis_names["sink"]) == others  # in order
    assert not pending_ids(redis_client, redis_names["source"])


async def test_a_hung_async_operator_is_named_when_the_grace_period_ends(
    tmp_path: Path,
    redis_address: str,
    redis_client: redis.Redis,
    redis_names: dict[str, str],
    workers: Workers,
    until: Until,
) -> None:
    config = write_config(
        tmp_path, redis_address, redis_names, 1, operator="hanging:HangsInProcess"
    )
    stuck = Run("scan-async").event({"i": 0, "hang": True})
    produce(redis_client, redis_names["source"], [stuck])
    worker = workers.start(config)
    await until(lambda: "process hangs on" in workers.log(worker), within=60)
    assert workers.stop(worker, timeout=40) == 0, workers.log(worker)
    log = workers.log(worker)
    assert f"abandoned the operator's call on event {stuck.id}" in log
    assert "(hung?); the message is left unacknowledged" in log


async def test_an_operator_raising_cancelled_error_has_failed(
    redis_address: str, redis_client: redis.Redis, redis_names: dict[str, str]
) -> None:
    class CancelsItself(Operator):
        async def process(self, message: Message) -> Output:
            if message.seq == 3:
                raise asyncio.CancelledError  # a bug: nothing cancelled it
            return message

    run = Run("scan-cancel")
    messages = [run.event({"i": i}) for i in range(8)]
    produce(redis_client, redis_names["source"], messages)
    block = Block(
        open_listener(f"redis://{redis_address}/{redis_names['source']}?group=g&block_ms=20"),
        CancelsItself(),
        [open_publisher(f"redis://{redis_address}/{redis_names['sink']}")],
        dead_letter=open_publisher(f"redis://{redis_address}/{redis_names['dlq']}"),
        retry=RetryPolicy(attempts=2, initial=0.001, maximum=0.002),
        max_messages=len(messages),
    )
    stats = await asyncio.wait_for(block.run(), 30)  # it used to stall for ever
    assert ids(redis_client, redis_names["sink"]) == [m.id for m in messages if m.seq != 3]
    [(_, letter)] = redis_client.xrange(redis_names["dlq"])
    assert letter[b"arroyo.dead-letter.error"] == b"OperatorCancelled"
    assert b"raised CancelledError" in letter[b"arroyo.dead-letter.reason"]
    assert (stats.acknowledged, stats.dead_lettered) == (8, 1)
