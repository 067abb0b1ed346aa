"""What the tests of ``arroyo tail`` share: the six records every source gets, what
tail must say about them, and running ``arroyo tail`` as a user types it.

Each source holds the same six records, in this order: a run of three good messages
(Start, an array Event, Stop), an Event written with facility B's schema (decodable only
with --schema), bytes that are no Arroyo data, and a dead letter written by Arroyo's own
publisher for that broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from arroyo import Event, Run
from arroyo.brokers import open_publisher
from arroyo.codec import Codec
from arroyo.errors import DecodeError
from arroyo.message import Message
from arroyo.runtime.publisher import DeadLetter
from arroyo.schema import SCHEMA_DIR, load

V2_FILE = SCHEMA_DIR / "examples" / "frame-metadata-v2.avsc"
V2 = load(V2_FILE)
CHECKED_METADATA = {"frame": 7, "exposure_s": 0.5, "detector": "eiger", "energy_kev": 12.4}
BAD = b"not arroyo data, just bytes \x00\xff\xfe"
ORIGINAL = b"\xde\xad\xbe\xef\x00\x01"
LETTER_SOURCE = {"topic": "frames", "partition": 0, "offset": 3}


@dataclass
class Sample:
    """The six records every source gets, and what tail must say about them."""

    stream: str = field(default_factory=lambda: f"scan-{uuid.uuid4().hex[:6]}")
    schema_file: str = str(V2_FILE)
    """The writer schema of the facility Event (for --schema)."""
    bad: bytes = BAD
    """The record that is no Arroyo data."""
    checked_metadata: dict[str, Any] = field(default_factory=lambda: dict(CHECKED_METADATA))

    def __post_init__(self) -> None:
        run = Run(self.stream)
        self.good: list[Message] = [
            run.start({"sample": "Si"}),
            run.array_event(np.arange(6, dtype=">u2").reshape(2, 3), {"frame": 0}),
            run.stop({"frames": 1}),
        ]
        self.checked = Event(
            metadata=dict(CHECKED_METADATA), payload=b"\x01\x02\x03", stream=self.stream, seq=3
        )
        self.letter = DeadLetter.from_exception(
            DecodeError("frame 3: truncated header"), ORIGINAL, LETTER_SOURCE, 1, "bridge"
        )

    async def publish(self, url: str, raw: Callable[[bytes], Any]) -> None:
        """Publish the six records to ``url``; ``raw(bytes)`` writes bytes as they are."""
        plain = open_publisher(url)
        facility = open_publisher(url, codec=Codec(writer=V2))
        await plain.start()
        await facility.start()
        try:
            for message in self.good:
                await plain.publish(message)
            await facility.publish(self.checked)
            await raw(BAD)
            await plain.publish_dead_letter(self.letter)
        finally:
            await plain.close()
            await facility.close()

    def check(self, lines: list[dict[str, Any]], with_schema: bool = True) -> None:
        """Assert that ``lines`` (tail --json, parsed) show the six records as they are."""
        kinds = [line["kind"] for line in lines]
        checked_kind = "event" if with_schema else "undecodable"
        assert kinds == ["start", "event", "stop", checked_kind, "undecodable", "dead-letter"]
        start, frame, stop, checked, bad, letter = lines
        assert [start["id"], frame["id"], stop["id"]] == [m.id for m in self.good]
        assert {start["stream"], frame["stream"], stop["stream"]} == {self.stream}
        assert start["data"] == {"sample": "Si"}
        assert frame["array"] == {"dtype": ">u2", "shape": [2, 3]}
        assert frame["payload_size"] == 12
        assert frame["metadata"] == {"frame": 0}
        if with_schema:
            assert checked["metadata"] == CHECKED_METADATA
            assert checked["id"] == self.checked.id
        else:
            assert "unknown writer schema" in checked["reason"]
            assert checked["size"] > 0
        assert bad["size"] == len(BAD)
        assert bad["head"] == BAD[:32].hex()
        assert bad["reason"].startswith("not Arroyo data")
        assert letter["dead_letter"]["reason"] == "frame 3: truncated header"
        assert letter["dead_letter"]["error"] == "DecodeError"
        assert letter["dead_letter"]["block"] == "bridge"
        assert letter["dead_letter"]["source"] == {k: str(v) for k, v in LETTER_SOURCE.items()}
        assert (letter["size"], letter["head"]) == (len(ORIGINAL), ORIGINAL.hex())
        assert letter["decode_error"].startswith("not Arroyo data")


class TailCli:
    """Runs ``arroyo tail`` in a process of its own, as a user types it."""

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``arroyo tail ARGS``, finished."""
        return subprocess.run(
            [sys.executable, "-m", "arroyo", "tail", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    async def lines(self, *args: str) -> list[dict[str, Any]]:
        """The lines of ``arroyo tail ARGS --exit-at-end --json``, parsed; it must exit 0."""
        done = await asyncio.to_thread(self.run, *args, "--exit-at-end", "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    async def first_new(self, *args: str, publish: Callable[[], Awaitable[None]]) -> Any:
        """The one line of ``arroyo tail ARGS --count 1 --json`` while ``publish()`` is
        called until it shows something: tail may not be reading yet when it starts
        (a subscriber that joins late, or a reader from the end)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "arroyo", "tail", *args, "--count", "1", "--json",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            while process.returncode is None:
                await publish()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 0.5)
            out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
        assert process.returncode == 0, err.decode()
        [line] = out.decode().splitlines()
        return json.loads(line)


@pytest.fixture
def tail_cli() -> TailCli:
    """Runs ``arroyo tail`` as a user does (:class:`TailCli`)."""
    return TailCli()


@pytest.fixture
def sample() -> Sample:
    """A new :class:`Sample` (its own run and stream name)."""
    return Sample()


@pytest.fixture
def make_sample() -> Callable[[], Sample]:
    """Makes a new :class:`Sample` at each call."""
    return Sample
