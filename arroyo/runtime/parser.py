"""Parsers turn what a listener received into messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from arroyo.codec import Codec, default_codec
from arroyo.errors import DecodeError
from arroyo.runtime.frames import SeqCounter

if TYPE_CHECKING:
    from arroyo.message import Message
    from arroyo.runtime.received import Raw


class Parser(Protocol):
    """Turns received bytes (or multipart parts) into one or more messages."""

    def parse(self, data: Raw) -> Message | list[Message]:
        """Parse ``data``. Raises DecodeError (naming the problem) for input it cannot read;
        the Block then sends the raw data to the dead-letter destination."""


class AvroParser:
    """Arroyo's own framing: Avro single-object or Confluent-framed messages."""

    frame_counter = SeqCounter
    """Frame accounting by ``seq`` (:mod:`arroyo.runtime.frames`)."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or default_codec()

    def parse(self, data: Raw) -> Message:
        """Decode one framed message (a multipart message must have exactly one part)."""
        if isinstance(data, list):
            if len(data) != 1:
                raise DecodeError(f"expected 1 part of Avro data, received {len(data)} parts")
            data = data[0]
        return self.codec.decode(data)
