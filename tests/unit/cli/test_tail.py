"""``arroyo tail`` on in-process and file sources, and its refusals (no broker needed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from arroyo import Event, Run, encode
from arroyo.brokers import memory
from arroyo.brokers.file import FilePublisher
from arroyo.browse import Reading, open_browser
from arroyo.cli import app

runner = CliRunner()


def test_a_file_is_shown_as_json_lines_with_its_record_numbers(tmp_path: Path) -> None:
    run = Run("scan-9")
    messages = [run.start({"x": 1}), run.event({"frame": 0}), run.stop()]

    async def write() -> None:
        async with FilePublisher(tmp_path / "run.avro") as publisher:
            for message in messages:
                await publisher.publish(message)

    asyncio.run(write())
    result = runner.invoke(app, ["tail", f"file://{tmp_path}/run.avro", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(text) for text in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == [m.id for m in messages]
    assert [line["source"]["record"] for line in lines] == [0, 1, 2]
    assert "3 shown: 3 messages, 0 dead letters, 0 undecodable (caught up)" in result.stderr


def test_a_missing_file_is_one_line() -> None:
    result = runner.invoke(app, ["tail", "file:///nowhere/run.avro"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: file:///nowhere/run.avro: no such file"


def test_browsing_a_memory_topic_takes_nothing_and_makes_no_group() -> None:
    topic = memory.topic("tail-unit")
    try:
        topic.put(Run("s").start())
        topic.append(b"garbage")

        async def look() -> list[int]:
            browser = open_browser("memory://tail-unit", Reading(exit_at_end=True))
            async with browser:
                return [record.source["index"] async for record in browser.records()]

        assert asyncio.run(look()) == [0, 1]
        assert topic.groups == {}
        assert len(topic.entries) == 2
    finally:
        memory.delete("tail-unit")


def test_a_memory_topic_that_does_not_exist_is_not_made() -> None:
    async def look() -> int:
        browser = open_browser("memory://tail-none", Reading(exit_at_end=True))
        async with browser:
            return len([record async for record in browser.records()])

    assert asyncio.run(look()) == 0
    assert "tail-none" not in memory._TOPICS


def test_refusals_are_one_line_each() -> None:
    cases = {
        ("zmq+push://127.0.0.1:5555",): "zmq+push:// sends; tail reads zmq+sub://",
        ("zmq+sub://127.0.0.1:5555", "--from-beginning"): "ZeroMQ keeps nothing",
        ("redis+pubsub://127.0.0.1:6379/c", "--from-beginning"): "pub/sub keeps nothing",
        ("amqp://g:g@127.0.0.1:5672/",): "tail needs a queue",
        ("kafka://127.0.0.1:9092/t?group.id=x",): "group.id cannot be set",
        ("file:///x.avro", "--schema", "/nowhere.avsc"): "schema file not found",
        ("file:///x.avro?parser=stream2", "--registry", "http://r:8081"): (
            "--schema and --registry are for Arroyo data, not stream2"
        ),
        ("file:///x.avro?parser=nosuch",): "unknown parser 'nosuch'",
        ("kafka://h:9092/t?connect_timeout=abc",): "kafka option 'connect_timeout': input",
    }
    for args, expected in cases.items():
        result = runner.invoke(app, ["tail", *args])
        assert result.exit_code == 2, (args, result.output)
        [error] = result.stderr.strip().splitlines()
        assert expected in error, (args, error)


def test_a_listener_url_can_be_pasted_its_group_is_ignored(caplog: object) -> None:
    browser = open_browser("redis://127.0.0.1:6379/frames?group=workers&batch=10")
    assert browser.name == "redis://127.0.0.1:6379/frames"


def test_json_bytes_of_an_event_are_encoded() -> None:
    topic = memory.topic("tail-unit-bytes")
    try:
        topic.append(encode(Run("s").event({"raw": b"\xff\xfe"}, b"12")))

        async def look() -> list[str]:
            from arroyo.browse.show import Viewer

            viewer = Viewer()
            browser = open_browser("memory://tail-unit-bytes", Reading(exit_at_end=True))
            async with browser:
                return [
                    json.dumps(shown.to_json())
                    async for record in browser.records()
                    for shown in viewer.show(record)
                ]

        [text] = asyncio.run(look())
        assert json.loads(text)["metadata"] == {"raw": {"size": 2, "head": "fffe"}}
    finally:
        memory.delete("tail-unit-bytes")


def test_what_a_record_carries_cannot_break_the_line_or_restyle_the_terminal() -> None:
    crafted = Event({"note": "a\nb"}, b"", stream="run\x1b[2J\nfake: 0 shown\u202e", id="i\rd")
    topic = memory.topic("tail-unit-controls")
    try:
        topic.put(crafted)
        topic.append(b"\x1b]0;title\x07 not Arroyo data")
        result = runner.invoke(app, ["tail", "memory://tail-unit-controls", "--exit-at-end"])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert len(lines) == 2, lines
        assert not any(c in result.stdout for c in "\x1b\r\x07\u202e")
        assert "stream=run\\x1b[2J\\nfake: 0 shown\\u202e seq=0 id=i\\rd" in lines[0]
        assert lines[1].startswith("undecodable ")
    finally:
        memory.delete("tail-unit-controls")
