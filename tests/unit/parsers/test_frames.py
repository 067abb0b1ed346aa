"""dtype handling shared by json-frame and msgpack-array, checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from arroyo import DecodeError
from arroyo.parsers import available, make_parser
from arroyo.parsers._frames import normalize_dtype
from arroyo.parsers.bluesky import BlueskyParser
from arroyo.parsers.json_frame import JsonFrameParser
from arroyo.parsers.msgpack_array import MsgpackArrayParser


@pytest.mark.parametrize(
    "text",
    [
        "<u2",
        ">u2",
        "u2",
        "=u2",
        "|u1",
        ">u1",
        "u1",
        "<i4",
        ">i8",
        "<f4",
        ">f8",
        "f2",
        "<c8",
        ">c16",
        "b1",
        "uint16",
        "int8",
        "float32",
        "float64",
        "complex128",
        "bool",
        ">uint16",
        "<float32",
    ],
)
def test_dtype_is_what_numpy_says(text: str) -> None:
    code, itemsize = normalize_dtype(text)
    expected = np.dtype(text.replace(">uint16", ">u2").replace("<float32", "<f4"))
    assert (code, itemsize) == (expected.str, expected.itemsize)


@pytest.mark.parametrize("text", ["object", "O", "<U8", "S4", "u3", "f16", "V8", "", 2, None])
def test_dtypes_without_a_portable_raw_form_are_refused(text: object) -> None:
    with pytest.raises(DecodeError, match="dtype"):
        normalize_dtype(text)


def test_network_order_is_big_endian() -> None:
    assert normalize_dtype("!u4") == (">u4", 4)


def test_builtin_parsers_are_found_by_name() -> None:
    assert {"arroyo", "json-frame", "msgpack-array", "bluesky"} <= set(available())
    assert isinstance(make_parser("json-frame"), JsonFrameParser)
    assert isinstance(make_parser("msgpack-array", seq_key="frame_number"), MsgpackArrayParser)
    parser = make_parser("bluesky", serializer="msgpack", prefix="scan")
    assert isinstance(parser, BlueskyParser)
    assert parser.prefix == b"scan"


def test_parsers_and_their_options_come_from_the_yaml_or_the_url() -> None:
    from arroyo.brokers.zmq import SeqGaps
    from arroyo.build import build
    from arroyo.config import parse_config

    config = parse_config(
        """
blocks:
  - name: beamline
    listener:
      url: zmq+sub://127.0.0.1:5568
      parser: bluesky
      parser_options: {allow_pickle: true, prefix: scan}
  - name: detector
    listener: zmq+pull://127.0.0.1:5555?parser=json-frame&rcvhwm=4
  - name: timepix
    listener:
      url: zmq+pull://127.0.0.1:5556
      parser: msgpack-array
      parser_options: {seq_key: frame_number}
"""
    )
    parsers = []
    for built in build(config):
        wrapper = built.block.listener.parser
        assert isinstance(wrapper, SeqGaps)  # ZeroMQ listeners count gaps
        parsers.append(wrapper.parser)
    bluesky, detector, timepix = parsers
    assert isinstance(bluesky, BlueskyParser)
    assert bluesky.allow_pickle and bluesky.prefix == b"scan"
    assert isinstance(detector, JsonFrameParser)
    assert isinstance(timepix, MsgpackArrayParser) and timepix.seq_key == "frame_number"


def test_unknown_parser_options_are_config_errors() -> None:
    from arroyo import ConfigError

    with pytest.raises(ConfigError, match="does not accept"):
        make_parser("json-frame", frame_key="x")
