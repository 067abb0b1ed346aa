"""Browse an Avro container file: ``file:///path/to/file.avro``.

The file is read record by record with the schema it holds; reading ends at the end of
the file (it is what was there at the start). From the end shows nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import IO, Any

from arroyo.brokers import BrokerURL
from arroyo.browse.base import Browser, Reading, Record, browse_options
from arroyo.errors import ArroyoError, ConfigError, DecodeError


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
        from fastavro import reader as avro_reader

        from arroyo.codec import from_record, is_generic
        from arroyo.schema import Schema

        if self.reading.from_end or self._file is None:
            return
        try:
            records = avro_reader(
                self._file, return_record_name=True, return_record_name_override=True
            )
        except Exception as exc:
            raise ArroyoError(f"{self.name}: not an Avro container file: {exc}") from None
        if not isinstance(records.writer_schema, dict):
            raise ArroyoError(f"{self.name}: the file's schema is not an Avro record")
        writer = Schema.from_definition(records.writer_schema, source=self.name)
        generic = is_generic(writer)
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


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> FileBrowser:
    """``file:///path.avro`` (``file://relative/path.avro``)."""
    browse_options(url, options, {})
    if url.host:
        return FileBrowser(Path(url.host, url.path), reading)
    if not url.path:
        raise ConfigError(f"{url}: a file URL needs a path, as in file:///data/run.avro")
    return FileBrowser(Path("/" + url.path), reading)
