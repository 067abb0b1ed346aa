"""What a listener hands to a Block: the bytes as received, where they came from, and how
to acknowledge them (the runtime's vocabulary, imported by listeners, parsers and the
delivery journal alike)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arroyo.message import Message

Raw = bytes | memoryview | list[bytes | memoryview]
"""What a listener received: one byte string, or the parts of a multipart message.

A part may be a read-only ``memoryview`` (1-D, bytes) when the listener hands over a
large buffer without copying it (ZeroMQ frames); parsers must accept both."""


@dataclass(slots=True, eq=False)
class Received:
    """One message as a listener received it, before parsing.

    ``source`` holds its coordinates (``url``, and e.g. ``topic``/``partition``/``offset``),
    which go into logs and dead letters. ``handle`` is the listener's own: whatever it
    needs to acknowledge this message. ``deliveries`` counts how often the broker has
    delivered it (1 the first time), so a message that keeps failing can be dead-lettered.
    ``messages``, when set, are already parsed (sources such as Avro files parse as they
    read) and ``data`` is then only kept for dead letters. ``trace`` and ``context``:
    tracing (:mod:`arroyo.runtime.tracing`).
    """

    data: Raw
    source: Mapping[str, Any]
    handle: Any = None
    deliveries: int = 1
    messages: list[Message] | None = None
    received_at: float = field(default_factory=time.monotonic)
    trace: Mapping[str, str] | None = None
    """The W3C trace context that came with it (``traceparent``, ``tracestate``), set by
    the listener only when tracing is on (:mod:`arroyo.runtime.tracing`)."""
    context: Any = None
    """The OpenTelemetry context of its ``process`` span, while tracing is on."""

    size: int = field(init=False, default=0)
    """Bytes received (all parts)."""

    def __post_init__(self) -> None:
        data = self.data
        self.size = sum(len(part) for part in data) if isinstance(data, list) else len(data)
