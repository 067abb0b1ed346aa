"""``file:///path/to/file.avro``: Avro object container files (fastavro).

The publisher archives a stream: each message is one record of the envelope schema,
and a message is confirmed once its block is flushed to the file (appending when the
file exists). The listener replays a file in order and ends at its end. Any Avro tool
(``fastavro``, ``avro-tools tojson``) can read these files: the schema is inside. The
options are declared in :class:`FilePublisherSettings` (a listener takes none).

``arroyo tail file:///path.avro`` (:class:`FileBrowser`) reads the file record by record
in the same way; reading ends at the end of the file (it is what was there at the
start), and from the end shows nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from fastavro import reader as avro_reader
from fastavro.write import Writer

from arroyo.brokers import BrokerURL
from arroyo.brokers.connector import Connector
from arroyo.brokers.settings import Settings
from arroyo.browse.base import Browser, Reading, Record, browse_settings
from arroyo.codec import Codec, default_codec
from arroyo.codec_records import from_record, is_generic
from arroyo.errors import ArroyoError, ConfigError, DecodeError
from arroyo.message import Message
from arroyo.runtime.listener import Intake, Listener, Received
from arroyo.runtime.parser import Parser
from arroyo.runtime.publisher import PipelinedPublisher
from arroyo.schema import Schema


class FileSettings(Settings):
    """What a file listener and ``arroyo tail`` take: no option."""

    broker = "file"


class FilePublisherSettings(FileSettings):
    """A publisher's options: ``compression``, the Avro codec of the file's blocks (those
    fastavro writes; ``snappy``, ``zstandard`` and ``lz4`` need their Python package);
    ``fsync``: each flushed block is also synced to the disk before it is confirmed."""

    compression: Literal["null", "deflate", "bzip2", "xz", "snappy", "zstandard", "lz4"] = "null"
    fsync: bool = False


_WRITING = FilePublisherSettings()


class FilePublisher(PipelinedPublisher):
    """Writes messages as records to an Avro container file.

    Messages sent in one turn of the event loop share a block: they are written, the
    block is flushed to the operating system (and with ``fsync=True`` to the disk), and
    then all of them are confirmed.
    """

    def __init__(
        self,
        path: str | Path,
        codec: Codec | None = None,
        compression: str = _WRITING.compression,
        fsync: bool = _WRITING.fsync,
    ) -> None:
        self.path = Path(path)
        self.codec = codec or default_codec()
        self.compression = compression
        self.fsync = fsync
        self._file: IO[bytes] | None = None
        self._writer: Writer | None = None
        self._waiting: list[asyncio.Future[None]] = []
        self._flush_scheduled = False

    @property
    def name(self) -> str:
        return f"file://{self.path}"

    async def start(self) -> None:
        """Open the file (appending when it exists and is not empty)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append = self.path.exists() and self.path.stat().st_size > 0
        self._file = open(self.path, "a+b" if append else "wb")  # noqa: SIM115, ASYNC230
        self._writer = Writer(
            self._file, self.codec.writer.parsed, codec=self.compression, sync_interval=1 << 20
        )

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Write the record now; the future completes when its block is flushed."""
        if self._writer is None:
            raise RuntimeError(f"{self.name}: start() was not called")
        self._writer.write(self.codec.to_record(message))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(done)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return done

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, []
        try:
            assert self._writer is not None and self._file is not None
            self._writer.flush()
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        except Exception as exc:
            for done in waiting:
                if not done.done():
                    done.set_exception(exc)
            return
        for done in waiting:
            if not done.done():
                done.set_result(None)

    async def close(self) -> None:
        """Flush and close the file."""
        if self._writer is not None:
            self._flush()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None


class FileListener(Listener):
    """Replays the records of an Avro container file, in order, then ends."""

    def __init__(self, path: str | Path, codec: Codec | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.codec = codec or default_codec()
        self._stopping = False

    @property
    def name(self) -> str:
        return f"file://{self.path}"

    async def start(self, intake: Intake) -> None:
        """Read the file record by record and hand each message over."""
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.name}: no such file")
        with open(self.path, "rb") as file:  # noqa: ASYNC230 (reads are small and buffered)
            records, generic = _container(file, self.name)
            for index, record in enumerate(records):
                if self._stopping:
                    return
                source = {"url": self.name, "record": index}
                try:
                    message = from_record(record, generic)
                except DecodeError as exc:
                    raise DecodeError(f"{self.name}, record {index}: {exc}") from None
                # Kept for a dead letter: the message in Arroyo's framing, when it has one.
                data = self.codec.encode(message) if generic else b""
                await intake.put(Received(data, source, index, messages=[message]))

    async def stop(self) -> None:
        """Stop reading."""
        self._stopping = True

    async def ack(self, received: Received) -> None:
        """Nothing to acknowledge in a file."""


class FileBrowser(Browser):
    """Reads the records of an Avro container file (already decoded: ``Record.messages``)."""

    def __init__(self, path: Path, reading: Reading) -> None:
        self.path = path
        self.reading = reading
        self._file: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return f"file://{self.path}"

    async def open(self) -> None:
        """Open the file; ArroyoError when there is none."""
        if not self.path.is_file():
            raise ArroyoError(f"{self.name}: no such file")
        self._file = open(self.path, "rb")  # noqa: SIM115, ASYNC230 (small buffered reads)

    async def records(self) -> AsyncGenerator[Record, None]:
        if self.reading.from_end or self._file is None:
            return
        records, generic = _container(self._file, self.name)
        index = 0
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:
                raise ArroyoError(f"{self.name}, record {index}: unreadable: {exc}") from None
            source = {"url": self.name, "record": index}
            try:
                found = Record(b"", source, messages=[from_record(record, generic)])
            except DecodeError as exc:
                found = Record(b"", source, problem=str(exc))
            yield found
            index += 1
            if index % 64 == 0:
                await asyncio.sleep(0)

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _container(file: IO[bytes], name: str) -> tuple[Iterator[Any], bool]:
    """The records of an Avro container file, and whether its schema is Arroyo's generic
    envelope. Raises DecodeError naming the file when it is not a container file, or its
    schema is not a record."""
    try:
        records = avro_reader(file, return_record_name=True, return_record_name_override=True)
    except Exception as exc:
        raise DecodeError(f"{name}: not an Avro container file: {exc}") from None
    if not isinstance(records.writer_schema, dict):
        raise DecodeError(f"{name}: the file's schema is not an Avro record")
    writer = Schema.from_definition(records.writer_schema, source=name)
    return records, is_generic(writer)


def _path(url: BrokerURL) -> Path:
    if url.host:  # file://relative/path.avro
        return Path(url.host, url.path)
    if not url.path:
        raise ConfigError(f"{url}: a file URL needs a path, as in file:///data/run.avro")
    return Path("/" + url.path)


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> FileListener:
    """``file:///path.avro``: replay a file."""
    FileSettings.from_url(url, options)
    return FileListener(_path(url))


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> FilePublisher:
    """``file:///path.avro?compression=deflate&fsync=true``: archive to a file."""
    settings = FilePublisherSettings.from_url(url, options)
    return FilePublisher(_path(url), codec, settings.compression, settings.fsync)


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> FileBrowser:
    """``file:///path.avro`` (``file://relative/path.avro``)."""
    browse_settings(FileSettings, url, options)
    return FileBrowser(_path(url), reading)


async def probe(endpoint: FileListener | FilePublisher, seconds: float) -> tuple[str, str]:
    """A listener's file must be there; a publisher's folder is made at start."""
    if isinstance(endpoint, FileListener):
        if not await asyncio.to_thread(Path(endpoint.path).is_file):
            return "FAILED", "no such file"
        return "ok", "the file is there"
    folder = Path(endpoint.path).parent
    there = await asyncio.to_thread(folder.is_dir)
    return "ok", f"{folder} {'exists' if there else 'will be made'}"


CONNECTOR = Connector(
    name="file",
    schemes=("file",),
    listener=listener,
    publisher=publisher,
    browser=browser,
    probe=probe,
)
