"""Arrays inside metadata: how a format keeps the arrays a message has besides its frame.

An Event carries one array as its payload; a detector's Start (a flatfield, a pixel
mask) or a neutron event message (pixel ids and times of flight) has several. Each is
kept, under its own name, as an *array value*: a map that every broker carries (Arroyo's
``Value`` holds bytes)::

    {"dtype": "<f4", "shape": [512, 1024], "data": b"...", "compression": "bslz4"}

``dtype`` as numpy writes it (byte order included), ``shape`` the dimensions (C order),
``data`` the raw bytes, ``compression`` present only when ``data`` is compressed (see
:mod:`arroyo.formats.compression`). :func:`to_array` gives the numpy array back.
"""

from __future__ import annotations

import math
from typing import Any

from arroyo._optional import require
from arroyo.errors import DecodeError
from arroyo.message import JSON


def array_value(
    dtype: str, shape: tuple[int, ...] | list[int], data: bytes, compression: str | None = None
) -> dict[str, JSON]:
    """The array value of raw (or compressed) ``data`` of ``dtype`` and ``shape``."""
    value: dict[str, JSON] = {"dtype": dtype, "shape": list(shape), "data": data}
    if compression is not None:
        value["compression"] = compression
    return value


def from_numpy(array: Any) -> dict[str, JSON]:
    """The array value of a numpy array (C order; its bytes are copied)."""
    np = require("numpy", "numpy", "Array values")
    array = np.ascontiguousarray(array)
    return array_value(array.dtype.str, tuple(array.shape), array.tobytes())


def is_array_value(value: object) -> bool:
    """True when ``value`` is an array value (a map with dtype, shape and bytes data)."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("dtype"), str)
        and isinstance(value.get("shape"), list)
        and isinstance(value.get("data"), bytes)
        and set(value) <= {"dtype", "shape", "data", "compression"}
    )


def to_array(value: Any, what: str = "array value") -> Any:
    """The read-only numpy array of an array value (decompressed when it says so).

    Raises DecodeError naming ``what`` when it is not an array value or its size does
    not match dtype and shape.
    """
    np = require("numpy", "numpy", "Array values")
    if not is_array_value(value):
        raise DecodeError(f"{what}: not an array value (dtype, shape, data): {value!r:.80}")
    try:
        dtype = np.dtype(value["dtype"])
    except TypeError:
        raise DecodeError(f"{what}: unknown dtype {value['dtype']!r}") from None
    if dtype.hasobject or dtype.fields is not None:
        raise DecodeError(f"{what}: refusing dtype {value['dtype']!r}")
    shape = tuple(value["shape"])
    need = math.prod(shape) * dtype.itemsize
    data = value["data"]
    if "compression" in value:
        from arroyo.formats.compression import decompress

        data = decompress(data, value["compression"], dtype.itemsize, need)
    if len(data) != need:
        raise DecodeError(
            f"{what}: {len(data)} bytes, but dtype {dtype.str} and shape {list(shape)} need {need}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)
