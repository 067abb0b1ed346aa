"""Avro container files: the publisher's options, and what a file that is not one does to
the listener and to ``arroyo tail``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arroyo import Run
from arroyo.brokers import open_listener, open_publisher
from arroyo.brokers.file import FileBrowser, FileListener, FilePublisher
from arroyo.browse import Reading, open_browser
from arroyo.errors import ConfigError, DecodeError
from arroyo.testing import listening


def test_publisher_options_come_from_the_url_and_the_yaml(tmp_path: Path) -> None:
    publisher = open_publisher(f"file://{tmp_path}/a.avro?fsync=true", {"compression": "deflate"})
    assert isinstance(publisher, FilePublisher)
    assert (publisher.compression, publisher.fsync) == ("deflate", True)
    default = open_publisher(f"file://{tmp_path}/b.avro")
    assert isinstance(default, FilePublisher)
    assert (default.compression, default.fsync) == ("null", False)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            lambda: open_publisher("file:///tmp/x.avro?compression=zip"),
            "file option 'compression': input should be 'null', 'deflate', 'bzip2', 'xz', "
            "'snappy', 'zstandard' or 'lz4', got 'zip'",
        ),
        (
            lambda: open_publisher("file:///tmp/x.avro?fsyn=true"),
            "unknown file option(s) 'fsyn' (did you mean 'fsync'?)",
        ),
        (lambda: open_listener("file:///tmp/x.avro?fsync=true"), "unknown file option(s) 'fsync'"),
        (lambda: open_browser("file:///tmp/x.avro?fsync=true"), "unknown file option(s) 'fsync'"),
        (lambda: open_listener("file://"), "a file URL needs a path"),
    ],
)
def test_a_bad_option_names_it_and_the_broker(make: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()  # type: ignore[operator]
    assert problem in str(caught.value)


@pytest.fixture
def not_avro(tmp_path: Path) -> Path:
    path = tmp_path / "notes.avro"
    path.write_bytes(b"these are notes, not an Avro container file\n")
    return path


def test_replaying_a_file_that_is_not_avro_is_one_line_naming_it(not_avro: Path) -> None:
    async def replay() -> None:
        listener = open_listener(f"file://{not_avro}")
        assert isinstance(listener, FileListener)
        async with listening(listener):
            pass

    with pytest.raises(DecodeError) as caught:
        asyncio.run(replay())
    message = str(caught.value)
    assert message.startswith(f"file://{not_avro}: not an Avro container file: ")
    assert "\n" not in message


def test_tail_of_a_file_that_is_not_avro_is_the_same_line(not_avro: Path) -> None:
    async def look() -> None:
        browser = open_browser(f"file://{not_avro}", Reading(exit_at_end=True))
        assert isinstance(browser, FileBrowser)
        async with browser:
            async for _ in browser.records():
                pass

    with pytest.raises(DecodeError, match=f"file://{not_avro}: not an Avro container file: "):
        asyncio.run(look())


async def test_a_compressed_archive_replays(tmp_path: Path, until: Callable[..., Any]) -> None:
    run = Run("deflated")
    sent = [run.start(), run.event({"i": 1}), run.stop()]
    async with open_publisher(f"file://{tmp_path}/run.avro?compression=deflate") as publisher:
        for message in sent:
            await publisher.publish(message)
    listener = open_listener(f"file://{tmp_path}/run.avro")
    async with listening(listener) as got:
        await until(lambda: len(got.items) == len(sent))
    assert [m for item in got.items for m in (item.messages or [])] == sent
