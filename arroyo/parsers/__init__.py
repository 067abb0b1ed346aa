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

from typing import Any

from arroyo.errors import ConfigError
from arroyo.plugins import Plugins
from arroyo.runtime.parser import AvroParser, Parser

PARSERS = Plugins(
    "parser",
    "arroyo.parsers",
    {
        "arroyo": "arroyo.runtime.parser:AvroParser",
        "json-frame": "arroyo.parsers.json_frame:JsonFrameParser",
        "msgpack-array": "arroyo.parsers.msgpack_array:MsgpackArrayParser",
        "bluesky": "arroyo.parsers.bluesky:BlueskyParser",
        "stream2": "arroyo.parsers.stream2:Stream2Parser",
        "ess": "arroyo.parsers.ess:EssParser",
        "bluesky-kafka": "arroyo.parsers.bluesky_kafka:BlueskyKafkaParser",
    },
)
"""The parsers: built in (imported only when used) and from entry points."""

BUILTIN = PARSERS.builtin


def available() -> list[str]:
    """Names of every parser: built in, then from entry points."""
    return PARSERS.names()


def needs_arroyo_messages(name: str) -> None:
    """ConfigError unless the parser ``name`` reads Arroyo's own messages, which is what
    ``check: lazy`` defers (:mod:`arroyo.codec_lazy`)."""
    if name != "arroyo":
        raise ConfigError(
            f"check: lazy reads Arroyo's own messages; parser {name!r} makes its own "
            "(use check: full)"
        )


def make_parser(name: str, **options: Any) -> Parser:
    """The parser called ``name``, made with ``options``. Raises ConfigError if unknown
    or if it does not take these options."""
    if name == "arroyo" and not options:
        return AvroParser()
    parser: Parser = PARSERS.make(name, **options)
    return parser
