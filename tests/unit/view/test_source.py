"""How ``arroyo view URL`` reads: it looks without consuming, unless told (or unless the
source can only be consumed); and the command as a user runs it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arroyo.brokers import memory, parse_url
from arroyo.brokers.file import FilePublisher
from arroyo.message import Run
from arroyo.runtime.parser import AvroParser
from arroyo.testing import free_port
from arroyo.view.client import ViewClient
from arroyo.view.server import acquire, release
from arroyo.view.source import plan


def test_a_source_is_looked_at_from_its_end_unless_told_otherwise() -> None:
    parser = AvroParser()
    live = plan(parse_url("memory://frames"), parser)
    assert not live.consume and live.from_end and "without consuming" in live.how
    assert not plan(parse_url("memory://frames"), parser, from_beginning=True).from_end
    assert not plan(parse_url("file:///data/run.avro"), parser).from_end  # a file: all of it
    pulled = plan(parse_url("zmq+pull://127.0.0.1:5555"), parser)
    assert pulled.consume and "taken" in pulled.how


@pytest.mark.parametrize(
    ("url", "kwargs", "error"),
    [
        ("memory://frames", {"consume": True}, "name one of the viewer's own with \\?group="),
        ("kafka://127.0.0.1:9092/frames", {"consume": True}, "consumer group"),
        ("zmq+pull://127.0.0.1:5555", {"from_beginning": True}, "are for looking"),
        ("memory://frames?grupo=x", {}, "grupo"),
    ],
)
def test_what_cannot_work_is_refused_before_anything_connects(
    url: str, kwargs: dict[str, Any], error: str
) -> None:
    from arroyo.errors import ConfigError

    with pytest.raises(ConfigError, match=error):
        plan(parse_url(url), AvroParser(), **kwargs)


async def test_looking_at_a_memory_topic_takes_nothing(
    until: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("looked")
    topic = memory.topic(name)
    run = Run("looked-at")
    topic.put(run.start({"sample": "old"}))  # before the view: not shown (from the end)
    source = plan(parse_url(f"memory://{name}"), AvroParser())
    server = await asyncio.to_thread(acquire, "127.0.0.1", 0)
    reading = asyncio.create_task(source.run(server))
    try:
        async with ViewClient(server.url) as client:
            await until(lambda: source.opened.is_set(), what="the browser opened (at the end)")
            topic.put(run.array_event(np.eye(4, dtype="<u2"), {"i": 0}))
            topic.put(run.stop())
            await client.read(until=lambda h: h["type"] == "stop")
            assert [h["type"] for h in client.messages] == ["event", "stop"]
        assert topic.groups == {}  # no consumer group was made
    finally:
        source.stop()
        await reading
        await asyncio.to_thread(release, server)
        memory.delete(name)


def received(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "status", timeout=5) as response:
            return int(json.loads(response.read())["received"])
    except OSError:
        return -1


async def test_the_command_shows_an_avro_file_and_stops_on_ctrl_c(
    tmp_path: Path, until: Callable[..., Any]
) -> None:
    path = tmp_path / "run.avro"
    run = Run("from-a-file")
    async with FilePublisher(path) as archive:
        await archive.publish(run.start({"sample": "Si"}))
        for i in range(3):
            await archive.publish(run.array_event(np.full((4, 6), i, dtype="<u2"), {"i": i}))
        await archive.publish(run.stop({"exit_status": "success"}))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "arroyo", "view", f"file://{path}", "--port", str(port)],
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        first = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert f"view started: http://127.0.0.1:{port}/ shows file://{path}" in first
        url = f"http://127.0.0.1:{port}/"
        await until(lambda: received(url) == 5, what="the file was read", within=30)
        async with ViewClient(url) as client:
            await client.read(until=lambda h: h["type"] == "stop")
            kinds = [h["type"] for h in client.messages]
            assert kinds == ["start", "event", "event", "event", "stop"]
            assert client.messages[0]["message"]["data"] == {"sample": "Si"}
            assert client.images == 1  # a late joiner: the newest frame
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0
        assert "view: 5 messages (3 frames) shown" in err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_the_command_says_in_one_line_what_is_wrong() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "arroyo", "view", "memory://x", "--consume"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "?group=NAME" in lines[0]
