"""Arroyo: stream scientific instrument data through message brokers.

>>> from arroyo import Start, Event, Stop, encode, decode
>>> decode(encode(Start({"sample": "Si"}, stream="scan-1"))).data
{'sample': 'Si'}
"""

from arroyo._clash import check_no_sentry_arroyo

check_no_sentry_arroyo()

from arroyo.codec import Codec, decode, encode  # noqa: E402
from arroyo.errors import (  # noqa: E402
    ArroyoError,
    ConfigError,
    DecodeError,
    EncodeError,
    MissingDependencyError,
    PublishError,
    RegistryError,
    SchemaError,
)
from arroyo.message import JSON, ArrayInfo, Event, Message, Run, Start, Stop  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "JSON",
    "ArrayInfo",
    "ArroyoError",
    "Codec",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "Event",
    "Message",
    "MissingDependencyError",
    "PublishError",
    "RegistryError",
    "Run",
    "SchemaError",
    "Start",
    "Stop",
    "decode",
    "encode",
]
