"""JSON-like values (Start and Stop data, generic Event metadata) as the ``arroyo.Value``
records of the Avro schema, and back.

The encoder keeps the limits of :mod:`arroyo.codec_guard` (levels of nesting, items in a
message), so that it does not write what every reader refuses; ``budget`` is
``[items left, max depth, max items]`` for the whole message.
"""

from __future__ import annotations

from typing import Any

from arroyo.errors import EncodeError
from arroyo.message import INT64, JSON


def _over(budget: list[int], depth: int, path: str) -> EncodeError:
    """The error for a container at ``depth`` that broke the ``budget`` (see wrap)."""
    if depth > budget[1]:
        limit = f"nesting deeper than {budget[1]} levels (limit arroyo.codec.MAX_DEPTH)"
    else:
        limit = (
            f"more than {budget[2]} array items and map entries in one message "
            "(limit arroyo.codec.MAX_ITEMS)"
        )
    shown = path if len(path) <= 80 else path[:72] + "..."  # a path 64 levels deep is long
    return EncodeError(f"{shown}: {limit}", path)


_BRANCHES: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    float: "double",
    str: "string",
    bytes: "bytes",
}
"""The ``arroyo.Value`` branch of each plain type whose values all fit it. A value is
wrapped with its branch named (fastavro's tuple notation), so that the writer does not
try the union's branches in turn."""


def _branch(value: float | str | bytes) -> str:
    return "double" if isinstance(value, float) else "string" if isinstance(value, str) else "bytes"


def wrap(value: Any, path: str, depth: int, budget: list[int]) -> dict[str, Any]:
    """A JSON-like value as the ``arroyo.Value`` record, refusing what would not round-trip
    or would break a reader's limits: ``depth`` is the levels of containers around it,
    ``budget`` is [items left, max depth, max items] for the whole message."""
    branch = _BRANCHES.get(type(value))
    if branch is not None:
        return {"v": (branch, value)}
    if isinstance(value, int):  # bool is found above (it has no subclasses)
        if not INT64[0] <= value <= INT64[1]:
            raise EncodeError(f"{path}: integer {value} does not fit in 64 bits", path)
        return {"v": ("long", value)}
    if isinstance(value, list | tuple):
        budget[0] -= len(value)
        if budget[0] < 0 or depth >= budget[1]:
            raise _over(budget, depth + 1, path)
        items = [wrap(v, f"{path}[{i}]", depth + 1, budget) for i, v in enumerate(value)]
        return {"v": ("array", items)}
    if isinstance(value, dict):
        return {"v": ("map", wrap_map(value, path, depth + 1, budget))}
    if isinstance(value, float | str | bytes):  # subclasses
        return {"v": (_branch(value), value)}
    if isinstance(value, bytearray | memoryview):
        return {"v": ("bytes", bytes(value))}
    raise EncodeError(
        f"{path}: {type(value).__name__} is not a JSON-like value "
        "(null, bool, int, float, str, bytes, list, dict)",
        path,
    )


def wrap_map(
    values: dict[str, Any], path: str, depth: int, budget: list[int]
) -> dict[str, dict[str, Any]]:
    """A dict of JSON-like values (``data``, ``metadata``, or one inside them at ``depth``)
    as the map of ``arroyo.Value`` records (see :func:`wrap`)."""
    budget[0] -= len(values)
    if budget[0] < 0 or depth > budget[1]:
        raise _over(budget, depth, path)
    out = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise EncodeError(f"{path}: map keys must be str, got {key!r}", path)
        out[key] = wrap(value, f"{path}.{key}", depth, budget)
    return out


_NESTED = (list, dict)


def unwrap_map(values: dict[str, dict[str, Any]]) -> dict[str, JSON]:
    """The dict of JSON-like values of a map of ``arroyo.Value`` records (``data``,
    generic ``metadata``) as fastavro reads it."""
    return {
        key: unwrap(value) if isinstance(v := value["v"], _NESTED) else v
        for key, value in values.items()
    }


def unwrap(value: dict[str, Any]) -> JSON:
    """The JSON-like value of an ``arroyo.Value`` record as fastavro reads it."""
    v = value["v"]
    if isinstance(v, list):
        return [unwrap(x) for x in v]
    if isinstance(v, dict):
        return {k: unwrap(x) for k, x in v.items()}
    return v  # type: ignore[no-any-return]
