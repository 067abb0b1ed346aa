"""Wire formats by name: how a publisher writes messages in a format other than Arroyo's.

A publisher writes Arroyo's own Avro framing unless told ``format: NAME``; then each
message goes through the format's :meth:`WireFormat.encode`, which gives the broker
records to send (none, one or several, in order). Built in: ``ess`` (ESS flatbuffers:
:mod:`arroyo.formats.ess`) and ``bluesky-kafka`` (bluesky's Kafka documents:
:mod:`arroyo.formats.bluesky_kafka`). Third-party formats register under the entry point
group ``arroyo.formats``::

    [project.entry-points."arroyo.formats"]
    my-format = "my_package.formats:MyFormat"

A format is a class (or factory) taking keyword options and returning a
:class:`WireFormat`. This package also holds what formats share:
:mod:`~arroyo.formats.compression` (Dectris' compressed frames),
:mod:`~arroyo.formats.arrays` (arrays inside metadata) and
:mod:`~arroyo.formats.stream2` (writing Dectris stream v2 messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from arroyo.plugins import Plugins

if TYPE_CHECKING:
    from arroyo.message import Message


@dataclass(frozen=True, slots=True)
class Record:
    """One broker message a format made: ``value`` bytes, and the ``key`` to send it
    with (None: the publisher's default, the message's stream) and ``headers``."""

    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class WireFormat(Protocol):
    """Writes Arroyo messages in a foreign format."""

    def encode(self, message: Message) -> list[Record]:
        """The records for ``message``, to send in this order (an empty list: nothing to
        send for it). Called once per message, in the order of the stream: a format may
        keep state per run (a bluesky descriptor before the first event), and forgets a
        run at its Stop. Raises EncodeError (a dead letter) for a message the format
        cannot carry; it then keeps no state of that message."""


FORMATS = Plugins(
    "format",
    "arroyo.formats",
    {
        "ess": "arroyo.formats.ess:EssFormat",
        "bluesky-kafka": "arroyo.formats.bluesky_kafka:BlueskyKafkaFormat",
    },
)
"""The wire formats: built in (imported only when used) and from entry points."""

BUILTIN = FORMATS.builtin


def available() -> list[str]:
    """Names of every format: built in, then from entry points."""
    return FORMATS.names()


def make_format(name: str, **options: Any) -> WireFormat:
    """The format called ``name``, made with ``options``. Raises ConfigError if unknown
    or if it does not take these options (MissingDependencyError without its extra)."""
    made: WireFormat = FORMATS.make(name, **options)
    return made
