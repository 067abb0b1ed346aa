"""``bluesky-kafka``: documents as bluesky-kafka's Publisher writes them to Kafka.

``bluesky_kafka.Publisher`` (subscribed to a RunEngine) sends each document as one
Kafka message whose value is ``msgpack.dumps((name, doc))``, numpy arrays packed by
``msgpack_numpy``, and whose key is the Publisher's ``key``. Read them with
``kafka://HOST:PORT/TOPIC?group=G&parser=bluesky-kafka``.

Documents become messages exactly as with the ``bluesky`` parser
(:mod:`arroyo.parsers.bluesky`): ``start`` -> Start, ``stop`` -> Stop, every other
document (pages expanded) -> an Event whose metadata is the document plus
``"document": NAME``; ``stream`` is the run's start uid. The ``bluesky-kafka`` publisher
format (:mod:`arroyo.formats.bluesky_kafka`) writes them back.

A value that is not msgpack, not a ``[name, document]`` pair, or names no bluesky
document raises DecodeError (a dead letter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arroyo._optional import require
from arroyo.errors import DecodeError
from arroyo.parsers.bluesky import DOCUMENTS, BlueskyParser

if TYPE_CHECKING:
    from arroyo.message import Message
    from arroyo.runtime.listener import Raw

msgpack = require("msgpack", "bluesky-kafka", "The bluesky-kafka parser")


class BlueskyKafkaParser(BlueskyParser):
    """Parses bluesky-kafka messages (see the module documentation)."""

    def __init__(self) -> None:
        super().__init__(serializer="msgpack")

    def parse(self, data: Raw) -> list[Message]:
        """The messages of one Kafka value (several for a page)."""
        if isinstance(data, list):
            if len(data) != 1:
                raise DecodeError(
                    f"bluesky-kafka: expected 1 part (msgpack [name, document]), got {len(data)}"
                )
            data = data[0]
        try:
            value: Any = msgpack.unpackb(data, raw=False, strict_map_key=False, timestamp=2)
        except Exception as exc:  # msgpack raises several unrelated types
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise DecodeError(
                f"bluesky-kafka: not msgpack ({detail}): {bytes(data[:40])!r}"
            ) from None
        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise DecodeError(
                f"bluesky-kafka: expected msgpack [name, document], got {type(value).__name__} "
                f"{value!r:.60}"
            )
        name, doc = value
        if not isinstance(name, str) or name not in DOCUMENTS:
            raise DecodeError(f"bluesky-kafka: unknown document name {name!r:.40}")
        return self._documents(name, doc)
