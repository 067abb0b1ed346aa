"""JSON-like values (Start and Stop data, generic Event metadata) as the ``arroyo.Value``
records of the Avro schema, and back.

The encoder keeps the limits of :mod:`arroyo.codec_guard` (levels of nesting, items in a
message), so that it does not write what every reader refuses; ``budget`` is
``[items left, max depth, max items]`` for the whole message.
"""

from __future__ import annotations

from typing import Any

from arroyo.errors import EncodeError
from arroyo.message import JSON

_INT64 = (-(2**63), 2**63 - 1)


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


def wrap(value: Any, path: str, depth: int, budget: list[int]) -> dict[str, Any]:
    """A JSON-like value as the ``arroyo.Value`` record, refusing what would not round-trip
    or would break a reader's limits: ``depth`` is the levels of containers around it,
    ``budget`` is [items left, max depth, max items] for the whole message."""
    if value is None or isinstance(value, bool | float | str | bytes):
        return {"v": value}
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise EncodeError(f"{path}: integer {value} does not fit in 64 bits", path)
        return {"v": value}
    if isinstance(value, list | tuple):
        budget[0] -= len(value)
        if budget[0] < 0 or depth >= budget[1]:
            raise _over(budget, depth + 1, path)
        return {"v": [wrap(v, f"{path}[{i}]", depth + 1, budget) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        return {"v": wrap_map(value, path, depth + 1, budget)}
    if isinstance(value, bytearray | memoryview):
        return {"v": bytes(value)}
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


def unwrap(value: dict[str, Any]) -> JSON:
    """The JSON-like value of an ``arroyo.Value`` record as fastavro reads it."""
    v = value["v"]
    if isinstance(v, list):
        return [unwrap(x) for x in v]
    if isinstance(v, dict):
        return {k: unwrap(x) for k, x in v.items()}
    return v  # type: ignore[no-any-return]
