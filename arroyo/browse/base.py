"""What every browser is: a read-only reader of one source that leaves it as it was."""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from arroyo.brokers.url import BrokerURL

if TYPE_CHECKING:
    from arroyo.brokers.settings import Settings
    from arroyo.message import Message

S = TypeVar("S", bound="Settings")

log = logging.getLogger("arroyo.browse")

Data = bytes | memoryview | list[bytes | memoryview]
"""What a source holds for one message: its bytes, or the parts of a multipart message."""


@dataclass(frozen=True, slots=True)
class Record:
    """One message of a source as it is stored there, not decoded.

    ``source`` holds its coordinates, named as the broker names them (``url`` always;
    Kafka: ``topic``, ``partition``, ``offset``, ``key``, ``timestamp``; Redis Streams:
    ``stream``, ``id``; RabbitMQ: ``queue``, ``message_id``, ``redelivered``...).
    ``headers`` are the message's headers (Kafka headers, AMQP headers, the other fields
    of a Redis entry). ``messages``, when set, are already decoded (an Avro file is read
    record by record) and ``data`` is then empty. ``problem``, when set, says why the
    record cannot be decoded, as only the browser knows (a Redis entry without its data
    field).
    """

    data: Data
    source: Mapping[str, Any]
    headers: Mapping[str, Any] = field(default_factory=dict)
    messages: list[Message] | None = None
    problem: str | None = None

    @property
    def size(self) -> int:
        """Bytes held (all parts)."""
        if isinstance(self.data, list):
            return sum(len(part) for part in self.data)
        return len(self.data)


class Browser(ABC):
    """Reads a source without changing it: never acknowledges, commits, deletes, joins
    or creates a consumer group, or declares anything.

    Use it as ``async with browser: async for record in browser.records(): ...``. Where
    reading starts (the beginning of what the source keeps, or its end) and whether it
    ends once caught up with what was there at the start are given when it is made.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """The source's URL, for messages (never with a password)."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, and note where reading starts and (to stop when caught up) where the
        source ends now. Raises ArroyoError, in one line naming the source, when it cannot
        be reached or does not exist. Changes nothing at the source."""

    @abstractmethod
    def records(self) -> AsyncGenerator[Record, None]:
        """The records, in the source's order (per partition for Kafka). Ends when caught
        up with what was there at :meth:`open` (when asked to), else waits for more until
        the caller stops iterating. Raises ArroyoError when the source goes away."""

    @abstractmethod
    async def close(self) -> None:
        """Give back what reading held (RabbitMQ: every message, to where it was) and
        disconnect. Safe to call more than once, and after a failed :meth:`open`."""

    @property
    def outcome(self) -> str:
        """What reading left at the source, said once it is closed."""
        return f"{self.name} is as it was"

    async def __aenter__(self) -> Browser:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(frozen=True, slots=True)
class Reading:
    """Where a browser starts and whether it stops once caught up.

    ``from_end``: True starts at the end (only what comes after :meth:`Browser.open`),
    False at the beginning of what the source keeps, None as the source allows (the
    beginning where the source keeps messages). ``exit_at_end``: stop once caught up with
    what was there at :meth:`Browser.open`.
    """

    from_end: bool | None = None
    exit_at_end: bool = False


def browse_settings(
    model: type[S],
    url: BrokerURL,
    options: Mapping[str, Any],
    ignored: Iterable[str] = (),
    silent: Iterable[str] = (),
) -> S:
    """The browser's settings ``model`` (see :mod:`arroyo.brokers.settings`) from ``url``
    (query) and ``options``, after leaving out those of a consuming listener (see
    :func:`without_listening_options`). Raises ConfigError naming a bad option."""
    url, options = without_listening_options(url, options, ignored, silent)
    return model.from_url(url, options)


def without_listening_options(
    url: BrokerURL,
    options: Mapping[str, Any],
    ignored: Iterable[str] = (),
    silent: Iterable[str] = (),
) -> tuple[BrokerURL, dict[str, Any]]:
    """``url`` and ``options`` without the options of the broker's listener that make no
    sense for a reader that changes nothing (``group``...), in ``ignored``: they are
    dropped with a warning instead of refused, so a listener's URL can be pasted as is;
    those in ``silent`` say what the browser does anyway, and are dropped silently."""
    dropped = sorted(set(ignored) & (set(url.query) | set(options)))
    ignored = set(ignored) | set(silent)
    if dropped:
        log.warning(
            "%s: ignoring %s: options of a consuming listener (tail changes nothing)",
            url,
            ", ".join(f"{key}={url.query.get(key, options.get(key))}" for key in dropped),
        )
    url = dataclasses.replace(url, query={k: v for k, v in url.query.items() if k not in ignored})
    return url, {k: v for k, v in options.items() if k not in ignored}
