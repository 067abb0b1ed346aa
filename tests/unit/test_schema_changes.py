"""The sentences of :mod:`arroyo.schema_changes` follow Avro's checker: a problem is
described exactly when Apache Avro's compatibility checker finds one."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from arroyo.schema import Compatibility, Schema, _can_read
from arroyo.schema_changes import explain

TYPES = st.sampled_from(
    [
        "int",
        "long",
        "float",
        "double",
        "string",
        "bytes",
        "boolean",
        ["null", "string"],
        ["null", "long"],
        ["null", "long", "string"],
        {"type": "array", "items": "long"},
        {"type": "array", "items": "int"},
        {"type": "map", "values": "string"},
        {"type": "map", "values": "bytes"},
        {"type": "enum", "name": "Mode", "symbols": ["FLY", "STEP"]},
        {"type": "enum", "name": "Mode", "symbols": ["FLY", "STEP", "GRID"]},
        {"type": "enum", "name": "Mode", "symbols": ["FLY"], "default": "FLY"},
        {"type": "fixed", "name": "Digest", "size": 16},
        {"type": "fixed", "name": "Digest", "size": 8},
        {"type": "record", "name": "Beam", "fields": [{"name": "energy", "type": "double"}]},
        {"type": "record", "name": "Beam", "fields": [{"name": "energy", "type": "float"}]},
        {"type": "record", "name": "Beam", "fields": []},
    ]
)
DEFAULTS = {
    "int": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "string": "",
    "bytes": "",
    "boolean": False,
}


@st.composite
def fields(draw: Any) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=4))
    out = []
    for name in names:
        kind = draw(TYPES)
        entry: dict[str, Any] = {"name": name, "type": kind}
        if draw(st.booleans()):
            if isinstance(kind, list):
                entry["default"] = None
            elif isinstance(kind, str):
                entry["default"] = DEFAULTS[kind]
        if draw(st.booleans()) and name == "d":
            entry["aliases"] = ["a"]
        out.append(entry)
    # one definition per named type: later uses refer to it by name
    seen: set[str] = set()
    for entry in out:
        kind = entry["type"]
        if isinstance(kind, dict) and "name" in kind:
            if kind["name"] in seen:
                entry["type"] = kind["name"]
            seen.add(kind["name"])
    return out


def schema(fields: list[dict[str, Any]]) -> Schema:
    definition = {"type": "record", "name": "Frame", "namespace": "f", "fields": fields}
    return Schema.from_definition(json.loads(json.dumps(definition)))


@settings(max_examples=400, deadline=None)
@given(fields(), fields())
def test_a_problem_is_described_exactly_when_the_checker_finds_one(
    old_fields: list[dict[str, Any]], new_fields: list[dict[str, Any]]
) -> None:
    old, new = schema(old_fields), schema(new_fields)
    for mode in Compatibility:
        backward = mode in (Compatibility.BACKWARD, Compatibility.FULL)
        forward = mode in (Compatibility.FORWARD, Compatibility.FULL)
        checker = (_can_read(new, old, "b") if backward else []) + (
            _can_read(old, new, "f") if forward else []
        )
        sentences = explain(old.definition, new.definition, backward, forward)
        assert bool(sentences) == bool(checker), (mode, checker, sentences)
