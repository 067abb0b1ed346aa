"""The ``arroyo.Value`` wrapping: values are written with their union branch named, which
must give the bytes that fastavro's own choice of branch gives."""

from __future__ import annotations

import enum
import io
from typing import Any

import numpy as np
from fastavro import schemaless_writer
from hypothesis import given

from arroyo.codec_values import unwrap_map, wrap_map
from arroyo.message import JSON
from arroyo.schema import builtin
from tests.unit.json_values import json_maps


class Level(enum.IntEnum):
    HIGH = 3


class Mode(enum.StrEnum):
    FAST = "fast"


def untagged(value: Any) -> Any:
    """A wrapped value with the branch names taken out: fastavro picks each branch."""
    if isinstance(value, tuple):
        return untagged(value[1])
    if isinstance(value, list):
        return [untagged(v) for v in value]
    if isinstance(value, dict):
        return {k: untagged(v) for k, v in value.items()}
    return value


def written(data: dict[str, Any]) -> bytes:
    record = {"id": "i", "stream": "s", "seq": 0, "timestamp": 0, "body": ("arroyo.Start", data)}
    out = io.BytesIO()
    schemaless_writer(out, builtin().parsed, record)
    return out.getvalue()


def wrapped(values: dict[str, Any]) -> dict[str, Any]:
    return wrap_map(values, "data", 1, [1_000_000, 64, 1_000_000])


@given(values=json_maps)
def test_named_branches_write_what_fastavro_would_choose(values: dict[str, JSON]) -> None:
    data = wrapped(values)
    assert written({"data": data}) == written({"data": untagged(data)})
    assert unwrap_map(untagged(data)) == values


def test_subclasses_of_plain_types_take_their_base_types_branch() -> None:
    values = {"level": Level.HIGH, "mode": Mode.FAST, "gain": np.float64(0.5), "n": 7}
    data = wrapped(values)
    assert [v["v"][0] for v in data.values()] == ["long", "string", "double", "long"]
    assert written({"data": data}) == written({"data": untagged(data)})
    assert unwrap_map(untagged(data)) == {"level": 3, "mode": "fast", "gain": 0.5, "n": 7}
