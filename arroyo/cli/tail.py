"""``arroyo tail``: print what a stream holds, one line per message, changing nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TextIO

import typer

from arroyo.browse import Browser, Reading, open_browser
from arroyo.browse.show import Shown, Viewer, head, size
from arroyo.cli.common import fail, url_parser
from arroyo.errors import ArroyoError, ConfigError
from arroyo.message import Event, Message
from arroyo.runtime.logs import configure, printable, redact


def describe(message: Message) -> str:
    """One readable line about a message."""
    head_ = f"{message.kind:5} stream={message.stream} seq={message.seq} id={message.id[:12]}"
    if isinstance(message, Event):
        body = f"metadata={_short(message.metadata)} payload={len(message.payload)} B"
        if message.array is not None:
            shape = "x".join(map(str, message.array.shape)) or "scalar"
            body += f" array={message.array.dtype}[{shape}]"
    else:
        body = f"data={_short(message.data)}"
    return f"{head_} {body}"


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_QUIET_COORDINATES = ("url", "key", "timestamp", "type", "redelivered", "delivery_count")


def _where(shown: Shown) -> str:
    source = shown.record.source
    return " ".join(f"{k}={v}" for k, v in source.items() if k not in _QUIET_COORDINATES)


def line(shown: Shown) -> str:
    """The text line of ``shown``, one line of printable text whatever the record holds
    (see :func:`printable`)."""
    return printable(_line(shown))


def _line(shown: Shown) -> str:
    """The text of ``shown``: a message as :func:`describe` says it; a dead letter with
    its reason, where it came from and its original; an undecodable record with where it
    is, its size, its first bytes and why."""
    if shown.kind == "undecodable":
        data = shown.data if shown.data is not None else b""
        return (
            f"undecodable {_where(shown)} size={size(data)} B head={head(data, 16)}: {shown.reason}"
        )
    if shown.kind == "dead-letter":
        letter = dict(shown.dead_letter or {})
        came_from = " ".join(f"{k}={v}" for k, v in letter.pop("source", {}).items())
        text = (
            f"dead-letter {_where(shown)} error={letter.get('error')} "
            f"reason={letter.get('reason')!r} from {came_from or '?'}"
        )
        if shown.message is not None:
            return f"{text}: {describe(shown.message)}"
        data = shown.data if shown.data is not None else b""
        return f"{text}: size={size(data)} B head={head(data, 16)}"
    assert shown.message is not None
    return describe(shown.message)


@dataclass
class _Counts:
    messages: int = 0
    dead_letters: int = 0
    undecodable: int = 0

    @property
    def total(self) -> int:
        return self.messages + self.dead_letters + self.undecodable

    def add(self, shown: Shown) -> None:
        if shown.kind == "undecodable":
            self.undecodable += 1
        elif shown.kind == "dead-letter":
            self.dead_letters += 1
        else:
            self.messages += 1

    def __str__(self) -> str:
        letters = "dead letter" if self.dead_letters == 1 else "dead letters"
        messages = "message" if self.messages == 1 else "messages"
        return (
            f"{self.total} shown: {self.messages} {messages}, {self.dead_letters} {letters}, "
            f"{self.undecodable} undecodable"
        )


class _Session:
    """One ``arroyo tail``: open the browser, print until it ends, ``--count`` lines were
    printed, the reader of stdout went away or SIGINT/SIGTERM came, then close it (which
    gives back what was held) however reading ended."""

    def __init__(self, browser: Browser, viewer: Viewer, count: int | None, as_json: bool) -> None:
        self.browser = browser
        self.viewer = viewer
        self.count = count
        self.as_json = as_json
        self.counts = _Counts()
        self.signal: str | None = None
        self._reading: asyncio.Task[str] | None = None

    async def _print(self, out: TextIO) -> str:
        async with contextlib.aclosing(self.browser.records()) as records:
            async for record in records:
                if self.signal is not None:
                    return self.signal  # a client swallowed the cancellation
                for shown in self.viewer.show(record):
                    text = json.dumps(shown.to_json()) if self.as_json else line(shown)
                    out.write(text + "\n")
                    self.counts.add(shown)
                    if self.count is not None and self.counts.total >= self.count:
                        out.flush()
                        return f"--count {self.count}"
                out.flush()
        return "caught up"

    def _stop(self, name: str, main: asyncio.Task[int]) -> None:
        self.signal = self.signal or name
        (self._reading or main).cancel()

    async def _read(self) -> str:
        """Print in a task of its own, cancelled (again, while it goes on: a client may
        swallow a cancellation) once a signal came."""
        self._reading = reading = asyncio.ensure_future(self._print(sys.stdout))
        while not reading.done():
            await asyncio.wait({reading}, timeout=0.5)
            if self.signal is not None and not reading.done():
                reading.cancel()
        try:
            return reading.result()
        except asyncio.CancelledError:
            if self.signal is None:
                raise
            return self.signal

    async def run(self) -> int:
        """Exit code: 0 (ended, stopped, output closed), 1 (the source failed), 2 (bad
        settings found on connecting)."""
        main = asyncio.current_task()
        assert main is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop, signum.name, main)
        try:
            await self.browser.open()
            why = await self._read()
        except asyncio.CancelledError:
            if self.signal is None:
                raise
            main.uncancel()  # a signal while connecting
            why = self.signal
        except BrokenPipeError:
            # The reader went away (| head): stop, and let nothing write to the pipe again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            why = "output closed"
        except ArroyoError as exc:
            typer.secho(f"error: {redact(str(exc))}", fg=typer.colors.RED, err=True)
            return 2 if isinstance(exc, ConfigError) else 1
        finally:
            await self.browser.close()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        typer.echo(f"tail: {self.counts} ({why}); {self.browser.outcome}", err=True)
        return 0


def tail(
    url: Annotated[str, typer.Argument(help="Where to read (a broker URL).", show_default=False)],
    schema: Annotated[
        list[Path] | None,
        typer.Option(
            "--schema",
            "-s",
            help="A writer schema of facility metadata (.avsc file, or a folder of them), "
            "to decode schema-checked streams (repeatable).",
        ),
    ] = None,
    registry: Annotated[
        str | None, typer.Option(help="Schema registry URL, for Confluent-framed data.")
    ] = None,
    from_beginning: Annotated[
        bool | None,
        typer.Option(
            "--from-beginning/--from-end",
            help="Start at the beginning of what the source keeps (the default, as kcat's "
            "consumer mode), or at its end (only what comes next).",
            show_default=False,
        ),
    ] = None,
    exit_at_end: Annotated[
        bool,
        typer.Option(
            "--exit-at-end", "-e", help="Stop once caught up with what was there at the start."
        ),
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="Stop after this many.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", "-J", help="One JSON object per line, with the broker's coordinates."
        ),
    ] = False,
) -> None:
    """Print the messages of a stream, one line each, like kcat -C; change nothing.

    tail never takes a message: it acknowledges nothing, commits nothing and creates no
    consumer group. Kafka: partitions read by assignment, no offset committed. Redis
    Streams: XRANGE/XREAD, no consumer group. Redis pub/sub and zmq+sub://: a subscriber
    (they keep nothing: only what comes from now on). RabbitMQ: a stream queue is read
    as a stream; a classic or quorum queue cannot be read without taking its messages,
    so tail takes them unacknowledged and puts every one back where it was when it
    stops. Until then they are invisible to other consumers, and RabbitMQ marks them
    redelivered (a quorum queue counts a delivery): prefer --exit-at-end there. AMQP
    does not say where a stream ends: on a stream queue, --exit-at-end stops once no
    message came for 1 s. zmq+pull:// is refused (a PULL socket takes the frames away
    from their receiver).

    What cannot be decoded is printed as such (size, first bytes in hex, why), dead
    letters with their reason. Give the writer schemas of schema-checked streams with
    --schema, or the registry with --registry. ?parser=NAME reads an instrument's own
    format (json-frame, msgpack-array, bluesky). Stops on Ctrl-C, and when the reader of
    its output goes away (| head).

    Examples:

      arroyo tail kafka://127.0.0.1:9092/frames --exit-at-end

      arroyo tail 'amqp://guest:guest@127.0.0.1:5672/?queue=frames' -e --json

      arroyo tail redis://127.0.0.1:6379/frames --from-end -s schemas/examples

      arroyo tail file:///data/run-42.avro --count 10
    """
    configure(logging.WARNING)
    try:
        from arroyo.brokers import parse_url

        parsed = parse_url(url)
        parser = url_parser(parsed, schema or [], registry)
        from_end = None if from_beginning is None else not from_beginning
        browser = open_browser(parsed, Reading(from_end=from_end, exit_at_end=exit_at_end))
    except ArroyoError as exc:
        raise fail(exc) from None
    session = _Session(browser, Viewer(parser), count, as_json)
    raise typer.Exit(asyncio.run(session.run()))
