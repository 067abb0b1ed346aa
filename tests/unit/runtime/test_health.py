"""Readiness and liveness (arroyo/runtime/health.py), served over HTTP by
arroyo/cli/endpoints.py: a Block is ready while it runs and reaches its destinations;
the process is alive while its event loop answers."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.cli.endpoints import Endpoints, serve
from arroyo.message import Message, Run
from arroyo.runtime import Block, Publisher, RetryPolicy
from arroyo.runtime.health import Health, not_ready
from arroyo.runtime.publisher import DeadLetter

Until = Callable[..., Any]
QUICK = RetryPolicy(attempts=None, initial=0.01, maximum=0.05)


class Switch(Publisher):
    """A destination the test turns off and on: publishes fail while it is ``down``."""

    def __init__(self, name: str = "switch://results") -> None:
        self._name = name
        self.down = False
        self.published: list[Message] = []

    @property
    def name(self) -> str:
        return self._name

    async def publish(self, message: Message) -> None:
        if self.down:
            raise ConnectionError(f"{self._name}: connection refused")
        self.published.append(message)

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        if self.down:
            raise ConnectionError(f"{self._name}: connection refused")


class Unplugged(MemoryListener):
    """A memory listener that says whether it is connected as the test sets it."""

    plugged = True

    @property
    def connected(self) -> bool:
        return self.plugged


def get(endpoints: Endpoints, path: str) -> tuple[int, str]:
    """GET ``path``: the status and the body (503 included)."""
    url = f"http://127.0.0.1:{endpoints.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
async def endpoints() -> AsyncIterator[Endpoints]:
    served = serve("127.0.0.1", 0, Health(answer_within=0.5))
    yield served
    served.close()


@pytest.fixture
def topic(unique_name: Callable[[str], str]) -> AsyncIterator[str]:
    name = unique_name("frames")
    yield name  # type: ignore[misc]
    memory.delete(name)


async def ask(endpoints: Endpoints, path: str) -> tuple[int, str]:
    """GET from a thread: the event loop must stay free to answer."""
    return await asyncio.to_thread(get, endpoints, path)


async def answers(endpoints: Endpoints, path: str, status: int, until: Until) -> str:
    """Poll ``path`` until it answers ``status``; the body."""
    seen: list[tuple[int, str]] = []

    async def check() -> bool:
        seen.append(await ask(endpoints, path))
        return seen[-1][0] == status

    deadline = time.monotonic() + 10
    while not await check():
        assert time.monotonic() < deadline, f"{path} never answered {status}: {seen[-3:]}"
        await asyncio.sleep(0.02)
    return seen[-1][1]


async def test_ready_while_running_not_ready_while_a_destination_fails(
    endpoints: Endpoints, topic: str, until: Until
) -> None:
    destination = Switch()
    block = Block(MemoryListener(topic), publishers=[destination], publish_retry=QUICK)
    endpoints.health.watch([block])
    assert await ask(endpoints, "/readyz") == (503, "block block: not started yet\n")

    running = asyncio.create_task(block.run())
    assert await answers(endpoints, "/readyz", 200, until) == "ready\n"

    run = Run("scan-1")
    destination.down = True
    memory.topic(topic).put(run.event({"i": 0}))
    body = await answers(endpoints, "/readyz", 503, until)
    assert body == (
        "block block: publishing to switch://results fails, retrying: "
        "switch://results: connection refused\n"
    )
    assert (await ask(endpoints, "/healthz"))[0] == 200  # not ready is not dead

    destination.down = False  # the retry gets through: ready again
    assert await answers(endpoints, "/readyz", 200, until) == "ready\n"
    assert len(destination.published) == 1

    block.stop()
    assert (await ask(endpoints, "/readyz"))[0] == 503
    await running
    assert await ask(endpoints, "/readyz") == (503, "block block: stopped\n")


async def test_a_failing_dead_letter_destination_makes_the_block_not_ready(
    topic: str, until: Until
) -> None:
    dead = Switch("switch://dlq")
    block = Block(MemoryListener(topic), dead_letter=dead, publish_retry=QUICK)
    running = asyncio.create_task(block.run())
    await until(lambda: block.readiness.state == "running")
    dead.down = True
    memory.topic(topic).append(b"not an arroyo message")
    await until(lambda: not_ready(block), what="not ready")
    assert not_ready(block) == [
        "block block: publishing to switch://dlq fails, retrying: switch://dlq: connection refused"
    ]
    dead.down = False
    await until(lambda: not not_ready(block), what="ready again")
    assert block.stats.dead_lettered == 1
    block.stop()
    await running


async def test_retries_that_give_up_leave_the_block_ready_for_the_next_publish_to_tell(
    topic: str, until: Until
) -> None:
    destination = Switch()
    block = Block(
        MemoryListener(topic),
        publishers=[destination],
        publish_retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.01),
    )
    running = asyncio.create_task(block.run())
    await until(lambda: block.readiness.state == "running")
    destination.down = True
    memory.topic(topic).put(Run("scan-1").event({"i": 0}))
    await until(lambda: block.stats.dropped == 1, what="the message given up (dropped)")
    assert not_ready(block) == []
    block.stop()
    await running


async def test_a_listener_that_says_it_is_not_connected_makes_the_block_not_ready(
    endpoints: Endpoints, topic: str, until: Until
) -> None:
    listener = Unplugged(topic)
    block = Block(listener, name="workers")
    endpoints.health.watch([block])
    running = asyncio.create_task(block.run())
    await answers(endpoints, "/readyz", 200, until)
    listener.plugged = False
    body = await answers(endpoints, "/readyz", 503, until)
    assert body == f"block workers: listener {listener.name} is not connected\n"
    listener.plugged = True
    await answers(endpoints, "/readyz", 200, until)
    block.stop()
    await running


async def test_every_block_must_be_ready_and_each_reason_is_a_line(
    endpoints: Endpoints, unique_name: Callable[[str], str], until: Until
) -> None:
    names = [unique_name("a"), unique_name("b")]
    first, second = Unplugged(names[0]), Unplugged(names[1])
    blocks = [Block(first, name="first"), Block(second, name="second")]
    endpoints.health.watch(blocks)
    running = [asyncio.create_task(b.run()) for b in blocks]
    await answers(endpoints, "/readyz", 200, until)
    first.plugged = second.plugged = False
    body = await answers(endpoints, "/readyz", 503, until)
    assert body.splitlines() == [
        f"block first: listener {first.name} is not connected",
        f"block second: listener {second.name} is not connected",
    ]
    for block in blocks:
        block.stop()
    await asyncio.gather(*running)
    for name in names:
        memory.delete(name)


async def test_healthz_is_503_while_the_event_loop_is_blocked(endpoints: Endpoints) -> None:
    assert await ask(endpoints, "/healthz") == (200, "starting\n")
    assert await ask(endpoints, "/readyz") == (503, "starting: the blocks are not running yet\n")
    endpoints.health.watch([])
    assert await ask(endpoints, "/healthz") == (200, "ok\n")
    answer: list[tuple[int, str]] = []
    probe = threading.Thread(target=lambda: answer.append(get(endpoints, "/healthz")))
    probe.start()
    probe.join(30)  # on the loop's thread: the loop is blocked until the probe has its answer
    assert answer == [(503, "the event loop did not answer within 0.5 s\n")]
    assert await ask(endpoints, "/healthz") == (200, "ok\n")


def test_healthz_is_503_once_the_event_loop_has_ended() -> None:
    health = Health(answer_within=0.5)

    async def watch() -> None:
        health.watch([])

    asyncio.run(watch())
    assert health.alive() == (False, "the event loop did not answer within 0.5 s")
    assert health.ready() == (False, ["the event loop did not answer within 0.5 s"])


async def test_metrics_are_still_served(endpoints: Endpoints, topic: str) -> None:
    Block(MemoryListener(topic), name="counted")
    status, body = await ask(endpoints, "/metrics")
    assert status == 200
    assert 'arroyo_received_total{block="counted"} 0.0' in body


def test_a_port_that_is_taken_raises_oserror(endpoints: Endpoints) -> None:
    with pytest.raises(OSError, match="in use"):
        serve("127.0.0.1", endpoints.port)
