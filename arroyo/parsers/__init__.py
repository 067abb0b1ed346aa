"""Parsers by name: how a listener turns received bytes into messages.

Built in: ``arroyo`` (Arroyo's own Avro framing, to chain Arroyo processes),
``json-frame`` (a JSON header and a raw frame: :mod:`arroyo.parsers.json_frame`),
``msgpack-array`` (msgpack metadata and a raw array: :mod:`arroyo.parsers.msgpack_array`),
``bluesky`` (bluesky's 0MQ documents: :mod:`arroyo.parsers.bluesky`), ``stream2`` (Dectris
SIMPLON stream v2: :mod:`arroyo.parsers.stream2`), ``ess`` (ESS flatbuffers:
:mod:`arroyo.parsers.ess`) and ``bluesky-kafka`` (bluesky's Kafka documents:
:mod:`arroyo.parsers.bluesky_kafka`). Third-party parsers register under the entry point
group ``arroyo.parsers``::

    [project.entry-points."arroyo.parsers"]
    my-detector = "my_package.parsers:MyDetectorParser"

A parser is a class (or factory) taking keyword options and returning an object with
``parse(data) -> Message | list[Message]`` that raises DecodeError for bad input. A
parser whose format numbers its frames names its
:class:`~arroyo.runtime.frames.FrameCounter` class in a ``frame_counter`` attribute
(frame accounting: :mod:`arroyo.runtime.frames`).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from arroyo.errors import ConfigError
from arroyo.runtime.parser import AvroParser, Parser

BUILTIN: dict[str, str] = {
    "arroyo": "arroyo.runtime.parser:AvroParser",
    "json-frame": "arroyo.parsers.json_frame:JsonFrameParser",
    "msgpack-array": "arroyo.parsers.msgpack_array:MsgpackArrayParser",
    "bluesky": "arroyo.parsers.bluesky:BlueskyParser",
    "stream2": "arroyo.parsers.stream2:Stream2Parser",
    "ess": "arroyo.parsers.ess:EssParser",
    "bluesky-kafka": "arroyo.parsers.bluesky_kafka:BlueskyKafkaParser",
}
"""Built-in parsers: name -> ``module:attr`` (imported only when used)."""


def available() -> list[str]:
    """Names of every parser: built in, then from entry points."""
    return sorted(set(BUILTIN) | {e.name for e in entry_points(group="arroyo.parsers")})


def make_parser(name: str, **options: Any) -> Parser:
    """The parser called ``name``, made with ``options``. Raises ConfigError if unknown."""
    if name == "arroyo" and not options:
        return AvroParser()
    factory: Callable[..., Parser]
    if name in BUILTIN:
        from arroyo.config import import_object

        factory = import_object(BUILTIN[name])
    else:
        found = [e for e in entry_points(group="arroyo.parsers") if e.name == name]
        if not found:
            raise ConfigError(f"unknown parser {name!r}; known: {', '.join(available())}")
        factory = found[0].load()
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"parser {name!r} does not accept these options: {exc}") from None
