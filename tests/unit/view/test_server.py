"""The viewer's server with real WebSocket clients: what each client gets, and that no
client can hold back the pipeline."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from arroyo.brokers import memory
from arroyo.brokers.memory import MemoryListener
from arroyo.build import build
from arroyo.config import parse_config
from arroyo.errors import ConfigError, ConnectError
from arroyo.message import Run
from arroyo.runtime import Block
from arroyo.testing import free_port
from arroyo.view.client import ViewClient
from arroyo.view.publisher import ViewPublisher
from arroyo.view.server import acquire, release
from arroyo.view.settings import ViewSettings


def is_stop(header: dict[str, Any]) -> bool:
    return header["type"] == "stop"


def get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


async def test_the_page_its_files_and_the_counters_are_served() -> None:
    server = await asyncio.to_thread(acquire, "127.0.0.1", 0)
    try:
        kind, page = await asyncio.to_thread(get, server.url)
        assert kind.startswith("text/html") and b'<script src="view.js">' in page
        kind, script = await asyncio.to_thread(get, server.url + "view.js")
        assert kind.startswith("text/javascript") and b"new WebSocket" in script
        _, status = await asyncio.to_thread(get, server.url + "status")
        assert json.loads(status)["received"] == 0
    finally:
        await asyncio.to_thread(release, server)


async def test_a_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        publisher = ViewPublisher("127.0.0.1", port)
        with pytest.raises(ConnectError, match=f"view://127.0.0.1:{port}: cannot listen there"):
            await publisher.start()


async def test_port_0_is_a_server_of_its_own_that_others_can_share() -> None:
    first = await asyncio.to_thread(acquire, "127.0.0.1", 0)
    second = await asyncio.to_thread(acquire, "127.0.0.1", 0)
    shared = await asyncio.to_thread(acquire, "127.0.0.1", first.port)
    try:
        assert first is not second and shared is first and first.port != 0
    finally:
        for server in (first, second, shared):
            await asyncio.to_thread(release, server)


async def test_publishers_of_one_address_share_its_server_until_the_last_closes() -> None:
    port = free_port()
    first, second = ViewPublisher("127.0.0.1", port), ViewPublisher("127.0.0.1", port)
    await first.start()
    await second.start()
    assert first.server is second.server is not None
    url = first.server.url
    await first.close()
    assert (await asyncio.to_thread(get, url + "status"))[0] == "application/json; charset=utf-8"
    await second.close()
    with pytest.raises(OSError, match="Connection refused"):
        await asyncio.to_thread(get, url + "status")


async def test_a_slow_client_gets_the_newest_frames_and_holds_nothing_back(
    until: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name, frames = unique_name("frames"), 40
    topic = memory.topic(name)
    # Every frame, however fast they come (max_fps=0): this is about each client's queue.
    publisher = ViewPublisher("127.0.0.1", free_port(), ViewSettings(max_fps=0))
    block = Block(MemoryListener(name), None, [publisher], name="view-clients")
    running = asyncio.create_task(block.run())
    clients: list[ViewClient] = []
    try:
        await until(lambda: publisher.server is not None, what="the viewer started")
        assert publisher.server is not None
        url = publisher.server.url
        fast = ViewClient(url, keep_bodies=True)
        slow = ViewClient(url, delay=0.05)
        stalled = ViewClient(url)  # reads nothing until the run is over
        for client in (fast, slow, stalled):
            await client.connect()
            clients.append(client)
        fast_reading = asyncio.create_task(fast.read(until=is_stop))
        slow_reading = asyncio.create_task(slow.read(until=is_stop))
        run = Run("two-clients")
        topic.put(run.start({"sample": "Si"}))
        for i in range(frames):
            topic.put(run.array_event(np.full((512, 512), i, dtype="<u2"), {"i": i}))
            # The fast client keeps up: at most two frames in flight.
            await until(lambda i=i: fast.images >= i, what=f"the fast client got frame {i - 1}")
        topic.put(run.stop({"exit_status": "success"}))
        await until(lambda: block.stats.acknowledged == frames + 2, what="the run went through")
        assert stalled.messages == []  # the pipeline finished while a client read nothing

        await fast_reading
        assert [h["seq"] for h in fast.messages] == list(range(1, frames + 3))
        assert fast.images == frames
        assert [np.frombuffer(fast.bodies[s], "<u2")[0] for s in sorted(fast.bodies)] == list(
            range(frames)
        )

        for client in (slow, stalled):
            if client is slow:
                await slow_reading
            else:
                await client.read(until=is_stop)
            await client.read(until=lambda h: h["type"] == "status")
            seqs = [h["seq"] for h in client.messages]
            assert seqs == list(range(1, frames + 3))  # every message, metadata at least
            events = [h for h in client.messages if h["type"] == "event"]
            assert events[-1]["image"] is not None  # the newest frame
            assert client.status is not None
            dropped = client.status["dropped_frames"]
            assert dropped > 0 and client.images + dropped == frames
            assert sum(1 for h in events if h.get("image_dropped")) == dropped
    finally:
        for client in clients:
            await client.close()
        block.stop()
        await running
        memory.delete(name)


async def test_a_late_joiner_sees_the_start_and_a_reconnection_what_it_missed(
    until: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("late")
    topic = memory.topic(name)
    publisher = ViewPublisher("127.0.0.1", free_port())
    block = Block(MemoryListener(name), None, [publisher], name="view-late")
    running = asyncio.create_task(block.run())
    try:
        run = Run("mid-run")
        topic.put(run.start({"sample": "LaB6", "energy_keV": 12.4}))
        for i in range(5):
            topic.put(run.array_event(np.full((8, 8), i, dtype="<u2"), {"i": i}))
        await until(lambda: block.stats.acknowledged == 6, what="the first frames went through")
        assert publisher.server is not None
        url = publisher.server.url
        async with ViewClient(url) as late:
            await late.read(until=lambda h: h["type"] == "event" and h["seq"] == 6)
            assert late.messages[0]["type"] == "start"
            assert late.messages[0]["message"]["data"] == {"sample": "LaB6", "energy_keV": 12.4}
            assert late.images == 1 and late.messages[-1]["image"] is not None
            assert late.hello is not None
            epoch, last = late.hello["epoch"], late.messages[-1]["seq"]
        for i in range(5, 10):  # while nobody watches
            topic.put(run.array_event(np.full((8, 8), i, dtype="<u2"), {"i": i}))
        topic.put(run.stop())
        await until(lambda: block.stats.acknowledged == 12, what="the rest went through")
        async with ViewClient(url, resume=last + 1, epoch=epoch) as back:
            await back.read(until=is_stop)
            assert back.hello is not None and back.hello["resumed"] and back.hello["missed"] == 0
            assert [h["seq"] for h in back.messages] == list(range(last + 1, 13))
            assert [h["message"]["metadata"]["i"] for h in back.messages[:-1]] == list(range(5, 10))
    finally:
        block.stop()
        await running
        memory.delete(name)


def test_a_view_publisher_in_yaml_is_checked_like_any_other() -> None:
    built = build(
        parse_config(
            "blocks: [{name: b, listener: 'memory://in', "
            "publishers: ['view://0.0.0.0:8091?frames=8', 'view://*:8092', 'view://:8093']}]"
        )
    )
    publishers = built[0].block.publishers
    assert [p.name for p in publishers] == [
        "view://0.0.0.0:8091",
        "view://0.0.0.0:8092",
        "view://127.0.0.1:8093",
    ]
    assert isinstance(publishers[0], ViewPublisher) and publishers[0].settings.frames == 8
    with pytest.raises(ConfigError, match=r"unknown view option.*'frame'.*did you mean 'frames'"):
        build(
            parse_config(
                "blocks: [{name: b, listener: 'memory://in', publishers: ['view://h:1?frame=2']}]"
            )
        )
    with pytest.raises(ConfigError, match="a view URL has no path"):
        build(
            parse_config(
                "blocks: [{name: b, listener: 'memory://in', publishers: ['view://h:1/x']}]"
            )
        )


def test_the_port_of_a_worker_is_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from arroyo.view.publisher import worker_port

    assert worker_port(8080) == 8080
    monkeypatch.setenv("ARROYO_WORKER", "3")
    assert worker_port(8080) == 8083
    assert worker_port(0) == 0


async def test_check_connect_says_whether_the_port_is_free() -> None:
    from arroyo.view import probe

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, detail = await probe(ViewPublisher("127.0.0.1", port), 1.0)
        assert status == "FAILED" and f"cannot listen on 127.0.0.1:{port}" in detail
    assert (await probe(ViewPublisher("127.0.0.1", free_port()), 1.0))[0] == "ok"


async def test_small_messages_go_to_a_page_together(until: Callable[..., Any]) -> None:
    publisher = ViewPublisher("127.0.0.1", free_port(), ViewSettings(max_fps=0))
    await publisher.start()
    try:
        assert publisher.server is not None
        async with ViewClient(publisher.server.url) as client:
            await until(lambda: publisher.server is not None and publisher.server.hub.clients)
            run = Run("small")
            messages = [run.start(), *(run.event({"i": i}) for i in range(300)), run.stop()]
            for message in messages:
                await publisher.send(message)
            await client.read(until=is_stop)
            assert [h["message"]["id"] for h in client.messages] == [m.id for m in messages]
            assert client.packets < len(messages) / 4  # a few WebSocket messages, not 302
    finally:
        await publisher.close()


def test_numpy_is_imported_with_the_server_not_at_the_first_frame() -> None:
    # An import holds the GIL: at the first frame, the pipeline would stall for it.
    code = "import sys, arroyo.view.server; print('numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"
