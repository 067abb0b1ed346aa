"""The messages' fast maker for decoders (``assembler``): the same result as ``__init__``."""

from __future__ import annotations

import dataclasses

import pytest

from arroyo.errors import DecodeError
from arroyo.message import INT64, ArrayInfo, Event, Message, Start, Stop, assembler, timestamp_ns


@pytest.mark.parametrize("cls", [Start, Event, Stop])
def test_an_assembled_message_equals_the_one_init_makes_field_for_field(
    cls: type[Message],
) -> None:
    made = cls(stream="s", seq=3, id="i", timestamp=5, trace={"traceparent": "t"})
    if isinstance(made, Event):
        made = dataclasses.replace(
            made, metadata={"a": 1}, payload=b"p", array=ArrayInfo("<u2", (2,))
        )
    else:
        made = dataclasses.replace(made, data={"a": [1]})
    values = [getattr(made, f.name) for f in dataclasses.fields(cls)]
    assembled = assembler(cls)(*values)
    assert type(assembled) is cls
    assert [getattr(assembled, f.name) for f in dataclasses.fields(cls)] == values
    assert assembled == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        assembled.seq = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        assembler(cls)(*values[:-1])  # every field must be given


@pytest.mark.parametrize(
    ("value", "unit", "ns"),
    [
        (INT64[1], "ns", INT64[1]),
        (INT64[0], "ns", INT64[0]),
        (INT64[1] // 1_000_000, "ms", INT64[1] // 1_000_000 * 1_000_000),
        (1.5, "s", 1_500_000_000),
        (-1.5, "s", -1_500_000_000),
    ],
)
def test_a_time_a_timestamp_holds_is_converted_to_nanoseconds(
    value: float, unit: str, ns: int
) -> None:
    assert timestamp_ns(value, unit, "t") == ns  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "unit", "error"),
    [
        (INT64[1] + 1, "ns", f"where: t {INT64[1] + 1} ns is out of range"),
        (INT64[0] - 1, "ns", f"where: t {INT64[0] - 1} ns is out of range"),
        (INT64[1] // 1_000_000 + 1, "ms", f"where: t {INT64[1] // 1_000_000 + 1} ms is out"),
        (1e10, "s", "where: t 10000000000.0 s is out of range"),
        (float("nan"), "s", "where: t nan is not a finite number of s"),
        (float("-inf"), "ms", "where: t -inf is not a finite number of ms"),
    ],
)
def test_a_time_a_timestamp_cannot_hold_is_a_decode_error_naming_where(
    value: float, unit: str, error: str
) -> None:
    """The error starts with the caller's ``where`` and the value, in its unit."""
    with pytest.raises(DecodeError) as info:
        timestamp_ns(value, unit, "where: t")  # type: ignore[arg-type]
    assert str(info.value).startswith(error)
