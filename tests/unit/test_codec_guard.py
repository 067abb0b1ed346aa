"""The codec's limits: bytes that would make fastavro recurse, allocate or loop without
end are refused with a DecodeError naming the field path and the limit, before fastavro
reads them; the encoder does not write what readers refuse."""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from arroyo import DecodeError, EncodeError, Event, Start, decode, encode
from arroyo.codec import CONFLUENT_MAGIC, MAX_DEPTH, MAX_ITEMS, Codec
from arroyo.codec_guard import Guard
from arroyo.codec_records import from_record
from arroyo.registry import Registry
from arroyo.schema import SCHEMA_DIR, Schema, SchemaStore, builtin, load
from arroyo.testing import avro_long, bomb, hostile_start

DEPTH_REASON = f"nesting deeper than {MAX_DEPTH} levels (limit arroyo.codec.MAX_DEPTH)"


def nested(levels: int, leaf: Any = 1) -> Any:
    """``levels`` lists, each holding the next (built without recursion)."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def depth(value: Any) -> int:
    """Levels of lists and dicts in a decoded value (iteratively: values may be deep)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, list | dict):
            deepest = max(deepest, level + 1)
            todo += [(v, level + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


# -- nesting --------------------------------------------------------------------------


def test_the_limit_is_64_levels_counting_the_data_map() -> None:
    inside = Start({"a": nested(MAX_DEPTH - 1)})  # data (1) + 63 lists = 64 levels
    assert decode(encode(inside)) == inside
    assert decode(bomb("nesting", MAX_DEPTH - 1)).data == {"a": nested(MAX_DEPTH - 1, None)}  # type: ignore[union-attr]
    with pytest.raises(EncodeError, match=r"^data\.a(\[0\])+\.\.\.: nesting deeper than 64 levels"):
        encode(Start({"a": nested(MAX_DEPTH)}))


@pytest.mark.parametrize("kind", ["nesting", "map nesting"])
@pytest.mark.parametrize("levels", [MAX_DEPTH, 500, 3000])
def test_nesting_beyond_the_limit_is_refused_naming_path_and_limit(kind: str, levels: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode(bomb(kind, levels))
    reason = str(info.value)
    assert reason.endswith(DEPTH_REASON)
    assert reason.startswith("data.a[0][0]" if kind == "nesting" else "data.a.a.a")
    assert "\n" not in reason


@pytest.mark.parametrize("levels", [5000, 100_000])
def test_nesting_that_overflowed_the_c_stack_is_refused(levels: int) -> None:
    """5,000 levels made fastavro's compiled reader die with SIGSEGV (issue 14): decoded in
    a process of its own, so that a regression fails this test instead of killing pytest."""
    program = (
        "from arroyo import DecodeError, decode\n"
        "from arroyo.testing import bomb\n"
        "try:\n"
        f"    decode(bomb('nesting', {levels}))\n"
        "except DecodeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"the decoding process died ({done.returncode}): {done.stderr}"
    assert done.stdout.strip().endswith(DEPTH_REASON), done.stdout


def test_event_metadata_is_guarded_like_start_data() -> None:
    with pytest.raises(EncodeError, match=r"^metadata\.deep[\[0\]]+\.\.\.: nesting deeper"):
        encode(Event({"deep": nested(MAX_DEPTH)}))
    writer = Codec(max_depth=200)  # a writer with a higher limit than its reader
    data = writer.encode(Event({"deep": nested(100)}, b"px"))
    assert writer.decode(data).metadata == {"deep": nested(100)}  # type: ignore[union-attr]
    with pytest.raises(DecodeError, match=r"^metadata\.deep\[0\]\[0\].*: nesting deeper"):
        decode(data)


def test_the_encoder_refuses_nesting_deeper_than_python_recurses() -> None:
    with pytest.raises(EncodeError, match="nesting deeper than 64 levels") as info:
        encode(Start({"a": nested(100_000)}))
    assert info.value.path is not None and info.value.path.startswith("data.a[0][0]")


def test_the_limits_are_codec_options() -> None:
    codec = Codec(max_depth=3, max_items=10)
    assert codec.decode(codec.encode(Start({"a": [[1]]}))).data == {"a": [[1]]}  # type: ignore[union-attr]
    with pytest.raises(EncodeError, match=r"^data\.a\[0\]\[0\]: nesting deeper than 3 levels"):
        codec.encode(Start({"a": [[[1]]]}))
    with pytest.raises(DecodeError, match=r"^data\.a\[0\]\[0\]: nesting deeper than 3 levels"):
        codec.decode(encode(Start({"a": [[[1]]]})))
    with pytest.raises(EncodeError, match=r"more than 10 array items and map entries"):
        codec.encode(Start({"a": list(range(10))}))  # 1 entry in data + 10 items
    assert codec.decode(encode(Start({"a": list(range(9))}))).data == {"a": list(range(9))}  # type: ignore[union-attr]
    with pytest.raises(DecodeError, match=r"^data\.a: more than 10 .*arroyo\.codec\.MAX_ITEMS"):
        codec.decode(encode(Start({"a": list(range(10))})))


# -- lengths and counts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("string length", r"^data\.s: length 4611686018427387904 declared, only 3 bytes left \("),
        ("array count", r"^data\.a: array block of 1099511627776 items declared, only 3 bytes"),
        ("map count", r"^data: map block of 1099511627776 items declared, only 3 bytes left"),
        ("negative count", r"^data\.a: array block of 1099511627776 items declared"),
        ("block size", r"^data\.a: array block of 4611686018427387904 bytes declared"),
        ("long number", r"^seq: a number longer than 10 bytes$"),
        ("union branch", r"^data\.u: union branch 9 of 8$"),
    ],
)
def test_lengths_and_counts_the_bytes_cannot_hold_are_refused(kind: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(bomb(kind))


def test_map_bombs_inside_values_name_the_entry() -> None:
    entry = avro_long(1) + avro_long(1) + b"m"
    inner = avro_long(7) + avro_long(-(2**40)) + avro_long(2**62)  # a map, negative count
    with pytest.raises(DecodeError, match=r"^data\.m: map block of 4611686018427387904 bytes"):
        decode(hostile_start(entry + inner + b"abc"))
    count = avro_long(7) + avro_long(2**40) + b"abc"
    with pytest.raises(DecodeError, match=r"^data\.m: map block of 1099511627776 items"):
        decode(hostile_start(entry + count))
    smallest = avro_long(7) + avro_long(3) + b"\x00\x00\x00\x00\x00"  # 3 entries need 6 bytes
    with pytest.raises(DecodeError, match=r"^data\.m: map block of 3 items declared, only 5"):
        decode(hostile_start(entry + smallest))
    with pytest.raises(DecodeError, match=r"^data: map block of 9223372036854775808 items"):
        decode(hostile_start(avro_long(-(2**63)) + avro_long(0)))


def test_a_million_items_is_the_limit_of_one_message() -> None:
    with pytest.raises(DecodeError, match=rf"^data\.a: more than {MAX_ITEMS} array items"):
        decode(bomb("items", MAX_ITEMS))  # the data map's entry and a million nulls
    with pytest.raises(EncodeError, match=rf"^data\.a: more than {MAX_ITEMS} array items"):
        encode(Start({"a": [None] * MAX_ITEMS}))  # refused before a Value is made


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode(Start({"a": 1}))[:-3], r"^truncated message \(\d+ bytes\): it ends inside data"),
        (encode(Start({"a": "text"}))[:-2], r"^data\.a: length 4 declared, only 3 bytes left"),
        (encode(Start({"a": 1})) + b"\x00\x00", "^2 unexpected bytes after the message$"),
    ],
)
def test_short_and_long_messages_say_so(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data)


def test_buffers_of_every_kind_are_guarded() -> None:
    good = encode(Event({"frame": 1}, b"px" * 40_000))  # above the zero-copy threshold
    for kind in (bytes, bytearray, memoryview):
        assert decode(kind(good)) == decode(good)
        with pytest.raises(DecodeError, match="nesting deeper"):
            decode(kind(bomb("nesting", 5000)))
    text = ""
    while len(encode(Start({"t": text}, id="0" * 32, timestamp=1))) % 4:
        text += "x"
    whole = encode(Start({"t": text}, id="0" * 32, timestamp=1))
    assert decode(memoryview(whole).cast("I")) == decode(whole)  # a view of 4-byte words


# -- every framing, every writer schema -------------------------------------------------


def test_confluent_framed_messages_pass_the_guard() -> None:
    registry = Registry("mock://guard-test")
    codec = Codec(registry=registry, subject="guard-value")
    good = codec.encode(Start({"a": [1, 2]}))
    assert codec.decode(good).data == {"a": [1, 2]}  # type: ignore[union-attr]
    framed = CONFLUENT_MAGIC + good[1:5] + bomb("nesting", 5000)[10:]
    with pytest.raises(DecodeError, match=r"^data\.a\[0\]\[0\].*nesting deeper than 64"):
        Codec(registry=registry).decode(framed)


def test_a_registry_id_of_a_schema_that_is_no_envelope_is_a_decode_error() -> None:
    registry = Registry("mock://guard-not-envelope")
    record = load(SCHEMA_DIR / "examples" / "frame-metadata-v1.avsc")
    schema_id = registry.register("someone-else-value", record)
    framed = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + b"\x02\x00\x00"
    with pytest.raises(DecodeError, match=rf"schema id {schema_id} is facility.FrameMetadata"):
        Codec(registry=registry).decode(framed)


def test_facility_writers_still_decode_and_are_guarded() -> None:
    v1 = load(SCHEMA_DIR / "examples" / "frame-metadata-v1.avsc")
    v2 = load(SCHEMA_DIR / "examples" / "frame-metadata-v2.avsc")
    writer = Codec(writer=v2)
    event = Event({"frame": 4, "exposure_s": 0.5, "detector": "eiger", "energy_kev": 1.5}, b"p")
    data = writer.encode(event)
    assert Codec(reader=v1, store=SchemaStore([v2])).decode(data).metadata["frame"] == 4  # type: ignore[union-attr]
    start = writer.encode(Start({"a": 1}))
    with pytest.raises(DecodeError, match="nesting deeper"):  # the writer's own fingerprint
        writer.decode(start[:10] + bomb("nesting", 5000)[10:])


def _linked_list() -> Schema:
    """A facility record that contains itself through a union, not an array or map."""
    return Schema.from_definition(
        {
            "type": "record",
            "name": "Node",
            "namespace": "facility",
            "fields": [
                {"name": "value", "type": "long"},
                {"name": "next", "type": ["null", "Node"]},
            ],
        }
    )


def _chain(length: int) -> dict[str, Any]:
    node: dict[str, Any] | None = None
    for value in range(length):
        node = {"value": value, "next": node}
    assert node is not None
    return node


def test_a_record_containing_itself_counts_a_level_each_time() -> None:
    codec = Codec(writer=_linked_list())
    short = Event(_chain(MAX_DEPTH), b"")
    assert codec.decode(codec.encode(short)) == short
    deep = codec.encode(Event(_chain(MAX_DEPTH + 1), b""))
    with pytest.raises(DecodeError, match=r"^metadata\.next\.next.*: nesting deeper than 64"):
        codec.decode(deep)


def test_names_from_a_schema_are_never_run_as_code() -> None:
    hostile = "x'''); import os; os._exit(3) #\n\"\\"
    schema = Schema.from_definition(
        {
            "type": "record",
            "name": "facility.Odd",
            "doc": hostile,
            "fields": [{"name": hostile, "type": {"type": "array", "items": "string"}}],
        }
    )
    codec = Codec(writer=schema)
    event = Event({hostile: ["a", "b"]}, b"")
    assert codec.decode(codec.encode(event)) == event
    data = codec.encode(Event({hostile: ["abc"]}, b""))
    with pytest.raises(DecodeError) as info:
        codec.decode(data[:-4])  # ends inside "abc"
    shown = hostile.replace("\n", "\\n")  # one line: the newline is shown escaped
    assert str(info.value) == (
        f"metadata.{shown}[0]: length 3 declared, only 2 bytes left (truncated or corrupt)"
    )


def test_values_one_after_the_other_are_checked_one_by_one() -> None:
    """As in the blocks of an Avro container file: Guard.end says where each one ends."""
    guard = Guard(builtin().definition)
    first, second = encode(Start({"a": [1]}))[10:], encode(Start({"b": "x"}))[10:]
    block = first + second + bomb("nesting", 100)[10:]
    assert guard.end(block, 0) == len(first)
    assert guard.end(block, len(first)) == len(first) + len(second)
    with pytest.raises(DecodeError, match=r"^data\.a\[0\].*nesting deeper than 64"):
        guard.end(block, len(first) + len(second))


def _nested_records(levels: int) -> dict[str, Any]:
    """A record nesting ``levels`` arrays of records (each type defined where used)."""
    schema: dict[str, Any] = {"type": "record", "name": f"L{levels}", "fields": []}
    inner = schema
    for level in range(levels - 1, -1, -1):
        child = {"type": "record", "name": f"L{level}", "fields": []}
        inner["fields"] = [
            {"name": "n", "type": "long"},
            {"name": "kids", "type": {"type": "array", "items": child}},
        ]
        inner = child
    return schema


def test_a_deeply_nested_schema_gives_a_working_guard() -> None:
    """Inline code nests only so deep (Python allows 20 blocks); the rest are calls."""
    definition = _nested_records(30)
    schema = Schema.from_definition(definition)
    value: dict[str, Any] = {}
    inner = value
    for _ in range(30):
        child: dict[str, Any] = {}
        inner.update(n=1, kids=[child])
        inner = child
    out = io.BytesIO()
    schemaless_writer(out, schema.parsed, value)
    Guard(schema.definition).check(out.getvalue(), 0)
    with pytest.raises(DecodeError, match=r"^kids\[0\]\.kids.*: nesting deeper than 20"):
        Guard(schema.definition).check(out.getvalue(), 0, max_depth=20)


def test_named_types_used_many_times_give_source_of_linear_size() -> None:
    fields = [{"name": "leaf", "type": "string"}]
    definition: dict[str, Any] = {"type": "record", "name": "T0", "fields": fields}
    for level in range(1, 25):  # each type uses the one before twice: 2**24 leaves inline
        definition = {
            "type": "record",
            "name": f"T{level}",
            "fields": [{"name": "a", "type": definition}, {"name": "b", "type": f"T{level - 1}"}],
        }
    guard = Guard(Schema.from_definition(definition).definition)
    assert len(guard.source.splitlines()) < 20_000


# -- the guard agrees with fastavro --------------------------------------------------------


def _levels(record: Any) -> int:
    """Levels of lists and maps in the data or metadata of an envelope record as fastavro
    reads it (Start and Stop data, generic Event metadata)."""
    message = from_record(record, True)
    return depth(message.metadata if isinstance(message, Event) else message.data)  # type: ignore[union-attr]


def test_the_guard_lets_through_only_what_keeps_the_limits_and_refuses_nothing_else() -> None:
    """Random damage to good messages, compared with fastavro reading them unguarded:
    what the guard accepts nests within the limit, and what it refuses fastavro cannot
    read, nests deeper than the limit, or holds what no Avro writer writes: a negative
    branch number (fastavro counts it from the end), a wrong block size (fastavro does
    not look at it), a number longer than 10 bytes."""
    rnd = random.Random(20261130)
    print("seed 20261130")
    parsed = builtin().parsed
    guard = Guard(builtin().definition)
    seeds = [
        encode(Start({"a": [1, 2.5, "x", None, {"b": b"y", "c": [[True]]}]}, stream="s")),
        encode(Event({"k": nested(5), "m": {"x": {"y": [1, 2]}}}, b"payload")),
        bomb("nesting", MAX_DEPTH - 1),
        bomb("map nesting", MAX_DEPTH - 1),
    ]
    accepted = 0
    for _ in range(4000):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(10, len(data))
            if rnd.random() < 0.5:
                data[at] ^= 1 << rnd.randrange(8)
            else:  # branch numbers of arrays and maps, small counts, varint continuations
                data[at] = rnd.choice([0x0C, 0x0E, 0x02, 0x04, 0x7F, 0x80, 0xFF])
        refusal = None
        try:
            guard.check(bytes(data), 10)
        except DecodeError as exc:
            refusal = str(exc)
        source = io.BytesIO(bytes(data[10:]))
        try:
            record = schemaless_reader(source, parsed, None, return_record_name=True)
            levels = _levels(record) if source.tell() == len(data) - 10 else None
        except Exception:
            levels = None  # fastavro cannot read it (or it makes no message)
        if refusal is None:
            assert levels is None or levels <= MAX_DEPTH
            accepted += levels is not None
        elif levels is not None:
            assert levels > MAX_DEPTH or re.search(r"bytes declared|than 10|branch -", refusal), (
                f"refused what fastavro reads ({levels} levels): {refusal}"
            )
    assert accepted > 200  # enough damage was harmless to compare
