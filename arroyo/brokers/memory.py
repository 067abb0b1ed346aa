"""``memory://NAME``: an in-process broker, for the demo and for unit tests of the runtime.

A topic is a log of encoded messages. Listeners read it through a consumer group
(``?group=G``, default ``default``): listeners of one group share the messages, each
message is delivered until it is acknowledged, and what a listener leaves unacknowledged
when it closes is delivered again (with its delivery count raised), as a real broker
would. ``?stop_at_end=true`` makes a listener stop once it has read everything. The
options are declared in :class:`MemoryListenerSettings` (a publisher takes none).

``arroyo tail memory://NAME`` (:class:`MemoryBrowser`, in this process only: the demo,
tests) reads the topic's log by index, without a consumer group: nothing is taken, no
group is made, and a topic that does not exist is not created (unless waiting for it).
A listener's ``group`` and ``stop_at_end`` are ignored there, with a warning.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from arroyo.brokers import BrokerURL
from arroyo.brokers.connector import Connector
from arroyo.brokers.settings import Settings
from arroyo.browse.base import Browser, Reading, Record, browse_settings
from arroyo.codec import Codec, default_codec
from arroyo.errors import ConfigError
from arroyo.message import Message
from arroyo.runtime.listener import Intake, Listener, Received
from arroyo.runtime.parser import AvroParser, Parser
from arroyo.runtime.publisher import PipelinedPublisher


class MemorySettings(Settings):
    """What a memory publisher and ``arroyo tail`` take: no option."""

    broker = "memory"


class MemoryListenerSettings(MemorySettings):
    """A listener's options: ``group``, the consumer group it reads through;
    ``stop_at_end``: stop once everything in the topic was read (else wait for more)."""

    group: str = "default"
    stop_at_end: bool = False


_LISTENING = MemoryListenerSettings()


@dataclass
class _Group:
    next: int = 0
    redeliver: deque[int] = field(default_factory=deque)
    deliveries: dict[int, int] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)


class MemoryTopic:
    """A named in-process log of encoded messages with consumer groups."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: list[bytes] = []
        self.groups: dict[str, _Group] = {}
        self.retain = True
        """When False, an entry's bytes are dropped once every group acknowledged it."""
        self._waiters: list[asyncio.Future[None]] = []

    def append(self, data: bytes) -> int:
        """Add encoded bytes; returns their index."""
        self.entries.append(data)
        self._wake()
        return len(self.entries) - 1

    def put(self, message: Message, codec: Codec | None = None) -> int:
        """Encode and add ``message``."""
        return self.append((codec or default_codec()).encode(message))

    def messages(self, codec: Codec | None = None) -> list[Message]:
        """Everything in the topic, decoded."""
        codec = codec or default_codec()
        return [codec.decode(data) for data in self.entries]

    def acked(self, group: str = "default") -> set[int]:
        """Indexes acknowledged by ``group``."""
        return set(self.groups[group].acked) if group in self.groups else set()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    def waiter(self) -> asyncio.Future[None]:
        """A future that is done once something is appended, taken or redelivered after
        this call: it is registered now, before the caller yields, so that nothing done
        meanwhile is missed (a task made of :meth:`wait` registers only when it first
        runs)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def wait(self) -> None:
        """Wait until something is appended, taken or redelivered."""
        await self.waiter()

    async def wait_backlog(self, group: _Group, limit: int) -> None:
        """Wait until ``group`` has at most ``limit`` entries left to read."""
        while len(self.entries) - group.next > limit:
            await self.wait()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_TOPICS: dict[str, MemoryTopic] = {}


def topic(name: str) -> MemoryTopic:
    """The topic called ``name`` (created when new)."""
    if name not in _TOPICS:
        _TOPICS[name] = MemoryTopic(name)
    return _TOPICS[name]


def delete(name: str) -> None:
    """Forget the topic called ``name``."""
    _TOPICS.pop(name, None)


class MemoryListener(Listener):
    """Reads a memory topic through a consumer group."""

    def __init__(
        self,
        name: str,
        group: str = _LISTENING.group,
        stop_at_end: bool = _LISTENING.stop_at_end,
        parser: Parser | None = None,
    ) -> None:
        super().__init__(parser)
        self.topic = topic(name)
        self.group = self.topic.groups.setdefault(group, _Group())
        self.stop_at_end = stop_at_end
        self._pending: set[int] = set()
        self._stopping = asyncio.Event()

    @property
    def name(self) -> str:
        return f"memory://{self.topic.name}"

    def _take(self) -> int | None:
        group = self.group
        if group.redeliver:
            return group.redeliver.popleft()
        if group.next < len(self.topic.entries):
            group.next += 1
            self.topic._wake()
            return group.next - 1
        return None

    async def start(self, intake: Intake) -> None:
        """Hand over entries as they come; at the end, wait for more (or return)."""
        while not self._stopping.is_set():
            index = self._take()
            if index is None:
                if self.stop_at_end:
                    return
                waiting = self.topic.waiter()  # registered before anything else runs
                stopping: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                stopping.cancel()
                continue
            deliveries = self.group.deliveries.get(index, 0) + 1
            self.group.deliveries[index] = deliveries
            self._pending.add(index)
            source = {"url": self.name, "index": index}
            await intake.put(Received(self.topic.entries[index], source, index, deliveries))

    async def stop(self) -> None:
        """Stop handing over entries."""
        self._stopping.set()

    async def ack(self, received: Received) -> None:
        """Mark the entry done for this group."""
        self._pending.discard(received.handle)
        self.group.acked.add(received.handle)
        topic = self.topic
        if not topic.retain and all(received.handle in g.acked for g in topic.groups.values()):
            topic.entries[received.handle] = b""

    async def close(self) -> None:
        """Give what was not acknowledged back to the group, for redelivery."""
        self.group.redeliver.extend(sorted(self._pending))
        self._pending.clear()
        self.topic._wake()


class MemoryPublisher(PipelinedPublisher):
    """Appends encoded messages to a memory topic (confirmed at once, in order)."""

    def __init__(self, name: str, codec: Codec | None = None) -> None:
        self.topic = topic(name)
        self.codec = codec or default_codec()

    @property
    def name(self) -> str:
        return f"memory://{self.topic.name}"

    def send(self, message: Message, wire: bytes | None = None) -> asyncio.Future[None]:
        """Append ``message`` now (``wire``: the bytes it arrived as, appended as they are
        when they have this codec's framing); the future is already done."""
        self.topic.append(self.codec.encode(message, wire))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _name(url: BrokerURL) -> str:
    name = (url.host or "") + (f"/{url.path}" if url.path else "")
    if not name:
        raise ConfigError(f"{url}: a memory URL needs a name, as in memory://frames")
    return name


class MemoryBrowser(Browser):
    """Reads a memory topic's entries by index (see the module's documentation)."""

    def __init__(self, topic: str, reading: Reading) -> None:
        self.topic = topic
        self.reading = reading
        self._start = 0
        self._end = 0

    @property
    def name(self) -> str:
        return f"memory://{self.topic}"

    async def open(self) -> None:
        """Note how many entries the topic has (its end)."""
        found = _TOPICS.get(self.topic)
        self._end = len(found.entries) if found is not None else 0
        self._start = self._end if self.reading.from_end else 0

    async def records(self) -> AsyncGenerator[Record, None]:
        index = self._start
        while True:
            if self.reading.exit_at_end:
                if index >= self._end:
                    return
                log = _TOPICS[self.topic]
            else:
                log = topic(self.topic)  # waiting for it: an empty topic is no topic
                while index >= len(log.entries):
                    await log.wait()
            yield Record(log.entries[index], {"url": self.name, "index": index})
            index += 1

    async def close(self) -> None:
        """Nothing to give back."""


def listener(url: BrokerURL, options: dict[str, Any], parser: Parser) -> MemoryListener:
    """``memory://NAME?group=G&stop_at_end=false``."""
    settings = MemoryListenerSettings.from_url(url, options)
    return MemoryListener(_name(url), settings.group, settings.stop_at_end, parser or AvroParser())


def publisher(url: BrokerURL, options: dict[str, Any], codec: Codec) -> MemoryPublisher:
    """``memory://NAME``."""
    MemorySettings.from_url(url, options)
    return MemoryPublisher(_name(url), codec)


def browser(url: BrokerURL, options: dict[str, Any], reading: Reading) -> MemoryBrowser:
    """``memory://NAME`` (a listener's options are ignored, with a warning)."""
    browse_settings(MemorySettings, url, options, MemoryListenerSettings.known())
    return MemoryBrowser(_name(url), reading)


async def probe(endpoint: Any, seconds: float) -> tuple[str, str]:
    """Nothing to reach: the topic is in this process."""
    return "ok", "in this process"


CONNECTOR = Connector(
    name="memory",
    schemes=("memory",),
    listener=listener,
    publisher=publisher,
    browser=browser,
    probe=probe,
)
