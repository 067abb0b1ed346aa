"""``spool://FOLDER``: a folder of files as a queue, an example third-party connector.

The publisher writes each encoded message as a file ``<sequence>.msg`` (written under
another name, then renamed: a reader never sees half a file). The listener hands over
the folder's ``.msg`` files in name order and deletes a file once its message is
acknowledged; what it leaves unacknowledged stays for the next listener, with its
delivery count kept in ``<name>.deliveries``. ``?stop_at_end=true``: stop once the
folder is empty (else look again every ``poll_ms``). One listener per folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.brokers.connector import Connector
from arroyo.brokers.settings import Settings
from arroyo.codec import Codec, default_codec
from arroyo.errors import ConfigError
from arroyo.message import Message
from arroyo.runtime.listener import Intake, Listener, Received
from arroyo.runtime.parser import AvroParser, Parser
from arroyo.runtime.publisher import PipelinedPublisher


class SpoolSettings(Settings):
    """A publisher's options: none."""

    broker = "spool"


class SpoolListenerSettings(SpoolSettings):
    """A listener's options."""

    stop_at_end: bool = False
    poll_ms: int = 50


def _folder(url: BrokerURL) -> Path:
    path = "/" + url.path if url.path else ""
    if not (url.host or path):
        raise ConfigError(f"{url}: a spool URL needs a folder, as in spool:///tmp/spool")
    return Path((url.host or "") + path)


class SpoolListener(Listener):
    """Hands over a folder's message files in name order (see the module)."""

    def __init__(self, folder: Path, settings: SpoolListenerSettings, parser: Parser) -> None:
        super().__init__(parser)
        self.folder = folder
        self.settings = settings
        self._stopping = asyncio.Event()
        self._taken: set[Path] = set()

    @property
    def name(self) -> str:
        return f"spool://{self.folder}"

    async def connect(self) -> None:
        """The folder must exist."""
        if not self.folder.is_dir():
            raise ConfigError(f"{self.name}: no such folder")

    async def start(self, intake: Intake) -> None:
        """Hand over each file not yet taken; at the end, stop or look again."""
        while not self._stopping.is_set():
            waiting = sorted(p for p in self.folder.glob("*.msg") if p not in self._taken)
            if not waiting:
                if self.settings.stop_at_end and not self._taken:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.settings.poll_ms / 1000)
                continue
            for path in waiting:
                counter = path.with_suffix(".deliveries")
                deliveries = int(counter.read_text()) + 1 if counter.exists() else 1
                counter.write_text(str(deliveries))
                self._taken.add(path)
                source = {"url": self.name, "file": path.name}
                await intake.put(Received(path.read_bytes(), source, path, deliveries))

    async def stop(self) -> None:
        """Stop handing over files."""
        self._stopping.set()

    async def ack(self, received: Received) -> None:
        """Delete the message's file: it is done."""
        path: Path = received.handle
        await asyncio.to_thread(_delete, path)
        self._taken.discard(path)


def _delete(path: Path) -> None:
    path.unlink()
    path.with_suffix(".deliveries").unlink(missing_ok=True)


class SpoolPublisher(PipelinedPublisher):
    """Writes each message as a file of the folder (confirmed once renamed in place)."""

    def __init__(self, folder: Path, codec: Codec) -> None:
        self.folder = folder
        self.codec = codec
        self._sequence = 0

    @property
    def name(self) -> str:
        return f"spool://{self.folder}"

    async def start(self) -> None:
        """Make the folder; continue its sequence."""
        self.folder.mkdir(parents=True, exist_ok=True)
        names = [int(p.stem) for p in self.folder.glob("*.msg") if p.stem.isdigit()]
        self._sequence = max(names, default=0)

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Write the file now; the future is already done."""
        self._sequence += 1
        final = self.folder / f"{self._sequence:012d}.msg"
        partial = final.with_suffix(".partial")
        partial.write_bytes(self.codec.encode(message, wire))
        os.replace(partial, final)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> SpoolListener:
    """``spool:///FOLDER?stop_at_end=false&poll_ms=50``."""
    settings = SpoolListenerSettings.from_url(url, options)
    return SpoolListener(_folder(url), settings, parser or AvroParser())


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> SpoolPublisher:
    """``spool:///FOLDER``."""
    SpoolSettings.from_url(url, options)
    return SpoolPublisher(_folder(url), codec or default_codec())


CONNECTOR = Connector(name="spool", schemes=("spool",), listener=listener, publisher=publisher)
