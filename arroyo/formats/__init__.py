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

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from arroyo.errors import ConfigError

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


BUILTIN: dict[str, str] = {
    "ess": "arroyo.formats.ess:EssFormat",
    "bluesky-kafka": "arroyo.formats.bluesky_kafka:BlueskyKafkaFormat",
}
"""Built-in formats: name -> ``module:attr`` (imported only when used)."""


def available() -> list[str]:
    """Names of every format: built in, then from entry points."""
    return sorted(set(BUILTIN) | {e.name for e in entry_points(group="arroyo.formats")})


def make_format(name: str, **options: Any) -> WireFormat:
    """The format called ``name``, made with ``options``. Raises ConfigError if unknown
    or if it does not take these options (MissingDependencyError without its extra)."""
    factory: Callable[..., WireFormat]
    if name in BUILTIN:
        from importlib import import_module

        module, _, attr = BUILTIN[name].partition(":")
        factory = getattr(import_module(module), attr)
    else:
        found = [e for e in entry_points(group="arroyo.formats") if e.name == name]
        if not found:
            raise ConfigError(f"unknown format {name!r}; known: {', '.join(available())}")
        factory = found[0].load()
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"format {name!r} does not accept these options: {exc}") from None
