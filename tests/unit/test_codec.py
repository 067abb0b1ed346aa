"""The codec: exact round trips, framing, schema evolution, facility schemas, and bad bytes."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from arroyo import DecodeError, EncodeError, Event, Start, Stop, decode, encode
from arroyo.codec import Codec
from arroyo.message import JSON, Message
from arroyo.registry import Registry
from arroyo.schema import SCHEMA_DIR, Schema, SchemaStore, builtin, load
from tests.unit.json_values import json_maps

EXAMPLES = SCHEMA_DIR / "examples"


def assert_exact(got: Any, want: Any, path: str = "") -> None:
    """Equal, and of the same type all the way down (True is not 1, -0.0 is not 0.0)."""
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for key in want:
            assert_exact(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_exact(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == want and math.copysign(1, got) == math.copysign(1, want), path
    else:
        assert got == want, path


@given(data=json_maps, metadata=json_maps, kind=st.sampled_from([Start, Stop, Event]))
def test_json_like_values_round_trip_exactly(
    data: dict[str, JSON], metadata: dict[str, JSON], kind: type[Message]
) -> None:
    message: Message
    if kind is Event:
        message = Event(metadata, b"x", stream="s", seq=3)
        decoded = decode(encode(message))
        assert isinstance(decoded, Event)
        assert_exact(decoded.metadata, metadata)
    else:
        message = kind(data, stream="s", seq=3)  # type: ignore[call-arg]
        decoded = decode(encode(message))
        assert isinstance(decoded, kind)
        assert_exact(decoded.data, data)  # type: ignore[union-attr]
    assert decoded == message


SIZES = [0, 1, 127, 128, 1023, 1024, 65536, 1 << 20, 4 << 20, 16 << 20]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.sampled_from(SIZES) | st.integers(0, 16 << 20), seed=st.integers(0, 2**32))
@example(size=0, seed=1)
@example(size=16 << 20, seed=2)
def test_payloads_from_0_bytes_to_16_mib_round_trip(size: int, seed: int) -> None:
    payload = random.Random(seed).randbytes(size)
    event = Event({"size": size}, payload, stream="run", seq=1)
    decoded = decode(encode(event))
    assert isinstance(decoded, Event)
    assert decoded.payload == payload
    assert decoded == event


DTYPES = ["<u1", "|b1", "<i2", ">i2", "<u2", ">u2", "<i4", ">f4", "<f8", ">f8", "<c16", "<f2"]


@settings(max_examples=200, deadline=None)
@given(
    array=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(
            np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)
        )
    )
)
def test_numpy_arrays_round_trip_with_dtype_byte_order_and_shape(array: np.ndarray) -> None:
    decoded = decode(encode(Event.from_array(array, {"n": 1})))
    assert isinstance(decoded, Event)
    out = decoded.to_array()
    assert out.dtype.str == array.dtype.str
    assert out.shape == array.shape
    assert out.tobytes() == array.tobytes()


def test_to_array_is_a_zero_copy_view_of_the_payload() -> None:
    decoded = decode(encode(Event.from_array(np.arange(6, dtype=">u2").reshape(2, 3))))
    assert isinstance(decoded, Event)
    out = decoded.to_array()
    assert isinstance(decoded.payload, bytes)
    assert out.base is not None and not out.flags.owndata
    assert np.shares_memory(out, np.frombuffer(decoded.payload, dtype=np.uint8))
    assert out.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_non_contiguous_and_fortran_arrays_are_sent_in_c_order() -> None:
    base = np.arange(24, dtype="<i4").reshape(4, 6)
    for array in (base[:, ::2], np.asfortranarray(base)):
        decoded = decode(encode(Event.from_array(array)))
        assert isinstance(decoded, Event)
        assert np.array_equal(decoded.to_array(), array)


def test_payload_size_not_matching_shape_is_a_decode_error() -> None:
    event = Event.from_array(np.zeros((2, 2), "<u2"))
    bad = Event(payload=b"\x00" * 7, array=event.array)
    with pytest.raises(DecodeError, match="payload has 7 bytes"):
        decode(encode(bad)).to_array()  # type: ignore[union-attr]


def test_object_arrays_are_refused() -> None:
    with pytest.raises(EncodeError, match="only plain dtypes"):
        Event.from_array(np.array([object()]))


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (2**63, "metadata.big"),
        ({"inner": [1, {3: "x"}]}, "metadata.big.inner[1]"),
        ({"inner": object()}, "metadata.big.inner"),
    ],
)
def test_values_avro_cannot_carry_are_refused_with_their_path(value: Any, path: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode(Event({"big": value}))
    assert info.value.path == path
    assert path in str(info.value)


def test_single_object_framing_carries_the_crc64_fingerprint() -> None:
    data = encode(Start({"a": 1}))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == builtin().fingerprint


def test_encoding_copies_a_large_payload_only_once() -> None:
    """The payload goes into the output with one copy: no intermediate buffer holds it."""
    payload = bytearray(4 << 20)
    event = Event(payload=memoryview(payload))
    data = encode(event)
    assert data.endswith(bytes(payload[-16:])) and len(data) < len(payload) + 200


def test_decoding_a_large_payload_gives_a_read_only_view_of_the_input_not_a_copy() -> None:
    data = encode(Event(payload=os.urandom(1 << 20), stream="big"))
    payload = decode(data).payload
    assert isinstance(payload, memoryview) and payload.obj is data and payload.readonly
    assert bytes(payload) == data[-(1 << 20) :]
    small = decode(encode(Event(payload=b"small")))
    assert type(small.payload) is bytes  # small ones are copied: faster than a view


def _avro_reference_schema() -> Any:
    """The envelope parsed by Apache's avro package from the .avsc files alone."""
    import avro.schema

    names = avro.schema.Names()
    for name in ["Value", "Array", "Start", "Stop", "Event", "Message"]:
        text = (SCHEMA_DIR / f"arroyo.{name}.avsc").read_text()
        parsed = avro.schema.make_avsc_object(json.loads(text), names)
    return parsed


def test_apache_avro_reads_our_bytes_with_only_the_avsc_files() -> None:
    import avro.io

    schema = _avro_reference_schema()
    assert schema.fingerprint("CRC-64-AVRO") == builtin().fingerprint
    array = np.arange(5, dtype=">f4")
    event = Event.from_array(array, {"energy": 7.5, "tags": ["a", None]}, stream="r", seq=2)
    data = encode(event)
    assert data[2:10] == schema.fingerprint("CRC-64-AVRO")
    record = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert (record["id"], record["stream"], record["seq"]) == (event.id, "r", 2)
    body = record["body"]
    assert body["metadata"]["energy"] == {"v": 7.5}
    assert body["array"] == {"dtype": ">f4", "shape": [5], "compression": None}
    assert body["payload"] == array.tobytes()
    stop = avro.io.DatumReader(schema).read(
        avro.io.BinaryDecoder(io.BytesIO(encode(Stop({"ok": True}))[10:]))
    )
    assert stop["body"] == {"data": {"ok": {"v": True}}}


# -- schema evolution --------------------------------------------------------------


def _envelope_with_extra_field() -> Schema:
    """Arroyo's envelope one version ahead: an added optional field."""
    definition = copy.deepcopy(builtin().definition)
    definition["fields"].insert(4, {"name": "origin", "type": ["null", "string"], "default": None})
    return Schema.from_definition(definition, source="envelope v-next")


def test_reader_one_version_behind_decodes_newer_writer() -> None:
    newer = _envelope_with_extra_field()
    import fastavro

    record = {
        "id": "a" * 32,
        "stream": "s",
        "seq": 1,
        "timestamp": 5,
        "origin": "beamline 7",
        "body": ("arroyo.Start", {"data": {"x": {"v": 1}}}),
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, newer.parsed, record)
    data = b"\xc3\x01" + newer.fingerprint + out.getvalue()
    with pytest.raises(DecodeError, match="unknown writer schema"):
        decode(data)
    decoded = Codec(store=SchemaStore([newer])).decode(data)
    assert decoded == Start({"x": 1}, id="a" * 32, stream="s", seq=1, timestamp=5)


def test_reader_one_version_ahead_decodes_older_writer() -> None:
    reader = Codec(reader=_envelope_with_extra_field())
    message = Stop({"n": 3}, stream="s")
    assert reader.decode(encode(message)) == message


# -- facility schemas ---------------------------------------------------------------


def test_facility_writer_refuses_metadata_that_does_not_conform() -> None:
    codec = Codec(writer=load(EXAMPLES / "frame-metadata-v1.avsc"))
    good = Event({"frame": 1, "exposure_s": 0.1, "detector": "pilatus"}, b"")
    assert codec.decode(codec.encode(good)) == good
    with pytest.raises(EncodeError) as info:
        codec.encode(Event({"frame": "one", "exposure_s": 0.1, "detector": "p"}, b""))
    assert "metadata.frame" in str(info.value)
    assert "long" in str(info.value)
    with pytest.raises(EncodeError, match=r"metadata\.detector"):
        codec.encode(Event({"frame": 1, "exposure_s": 0.1}, b""))


def test_facility_v2_writer_read_by_v1_and_v2_readers() -> None:
    v1, v2 = load(EXAMPLES / "frame-metadata-v1.avsc"), load(EXAMPLES / "frame-metadata-v2.avsc")
    writer = Codec(writer=v2)
    event = Event({"frame": 4, "exposure_s": 0.5, "detector": "eiger", "energy_kev": 12.4}, b"px")
    data = writer.encode(event)
    as_v1 = Codec(reader=v1, store=SchemaStore([v2])).decode(data)
    as_v2 = Codec(reader=v2).decode(data)
    assert as_v2 == event
    assert isinstance(as_v1, Event)
    assert as_v1.metadata == {"frame": 4, "exposure_s": 0.5, "detector": "eiger"}
    assert as_v1.payload == b"px"


def test_incompatible_writer_is_a_decode_error_naming_both_schemas(tmp_path: Path) -> None:
    changed = json.loads((EXAMPLES / "frame-metadata-v1.avsc").read_text())
    changed["fields"][0]["type"] = "string"
    path = tmp_path / "frame-string.avsc"
    path.write_text(json.dumps(changed))
    data = Codec(writer=load(path)).encode(
        Event({"frame": "x", "exposure_s": 1.0, "detector": "d"})
    )
    reader = Codec(
        reader=load(EXAMPLES / "frame-metadata-v1.avsc"), store=SchemaStore([load(path)])
    )
    with pytest.raises(DecodeError, match="cannot be read as"):
        reader.decode(data)


# -- registry framing (confluent-kafka's mock registry; the real one is an integration test)


def test_confluent_framing_with_a_registry() -> None:
    registry = Registry("mock://codec-test")
    codec = Codec(registry=registry, subject="frames-value")
    data = codec.encode(Start({"a": 1}))
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert registry.schema(schema_id).fingerprint == builtin().fingerprint
    reader = Codec(registry=registry)
    assert reader.decode(data) == codec.decode(data)
    with pytest.raises(DecodeError, match="no schema registry"):
        Codec().decode(data)


# -- bad bytes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not Arroyo data"),
        (b"{}", "not Arroyo data"),
        (b"\xc3\x01\x00", "truncated"),
        (b"\xc3\x01" + b"\x01" * 8 + b"rest", "unknown writer schema"),
        (encode(Start({"a": 1}))[:-1], "truncated"),
        (encode(Start({"a": 1})) + b"\x00", "unexpected bytes"),
    ],
)
def test_bad_bytes_raise_decode_error_saying_why(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data)


def test_fuzz_random_and_mutated_bytes_only_ever_raise_decode_error() -> None:
    rnd = random.Random(20261128)
    seeds = [
        encode(Start({"a": [1, 2.5, "x", None, {"b": b"y"}]}, stream="s")),
        encode(Event.from_array(np.arange(10, dtype="<u2"), {"k": True})),
        encode(Stop()),
    ]
    header = seeds[0][:10]
    decoded = 0
    for i in range(12_000):
        base = bytearray(rnd.choice(seeds))
        choice = i % 6
        if choice == 0:
            data = bytes(rnd.randbytes(rnd.randint(0, 64)))
        elif choice == 1:
            data = header + rnd.randbytes(rnd.randint(0, 64))
        elif choice == 2:
            for _ in range(rnd.randint(1, 4)):
                base[rnd.randrange(len(base))] ^= 1 << rnd.randrange(8)
            data = bytes(base)
        elif choice == 3:
            data = bytes(base[: rnd.randrange(len(base))])
        elif choice == 4:
            at = rnd.randrange(10, len(base))
            data = bytes(base[:at] + rnd.randbytes(rnd.randint(1, 8)) + base[at:])
        else:
            at = rnd.randrange(10, len(base))
            base[at : at + 8] = b"\xff" * 8  # huge varints: lengths and counts
            data = bytes(base)
        try:
            decode(data)
            decoded += 1
        except DecodeError:
            pass
    assert decoded > 0  # some mutations stay valid; the rest raised only DecodeError


def test_lenient_codec_passes_non_conforming_messages_through_unchecked() -> None:
    v1 = load(EXAMPLES / "frame-metadata-v1.avsc")
    strict, lenient = Codec(writer=v1), Codec(writer=v1, lenient=True)
    bad = Event({"frame": "one", "note": [1, 2]}, b"px")
    with pytest.raises(EncodeError):
        strict.encode(bad)
    data = lenient.encode(bad)  # written with the generic envelope instead
    assert lenient.unchecked == 1
    assert decode(data) == bad
    reader = Codec(reader=v1, lenient=True)
    assert reader.decode(data) == bad  # does not conform to v1: passed as written
    assert reader.unchecked == 1
    with pytest.raises(DecodeError, match=r"does not conform to facility.FrameMetadata"):
        Codec(reader=v1).decode(data)


def test_a_facility_reader_checks_generic_metadata_against_its_record() -> None:
    v1 = load(EXAMPLES / "frame-metadata-v1.avsc")
    reader = Codec(reader=v1)
    good = Event({"frame": 2, "exposure_s": 0.5, "detector": "pilatus"}, b"px")
    assert reader.decode(encode(good)) == good
    with pytest.raises(DecodeError, match=r"metadata\.exposure_s: expected double, got 'long'"):
        reader.decode(encode(Event({"frame": 2, "exposure_s": "long", "detector": "p"})))
    assert Codec(reader=v1, lenient=True).decode(encode(Event({"frame": "x"}))) is not None


@pytest.mark.parametrize("name", ["seq", "timestamp"])
def test_an_identity_number_beyond_64_bits_is_an_encode_error_naming_it(name: str) -> None:
    """seq and timestamp are not checked before fastavro writes them: when fastavro
    refuses one, the error names the field and the value, not only fastavro's words."""
    message = Start({"a": 1}, stream="s", **{name: 1 << 63})
    with pytest.raises(EncodeError) as info:
        encode(message)
    assert str(info.value) == (
        f"cannot encode start {message.id}: {name} {1 << 63} does not fit in 64 bits"
    )
    assert info.value.path == name
