"""Dectris SIMPLON stream v2 on the wire: CBOR tags, typed arrays, message writers.

Stream v2 (EIGER2, PILATUS4; ZeroMQ PUSH, port 31001) sends one CBOR map per ZeroMQ
message, after the self-describe tag 55799. Its ``type`` is ``start`` (series
settings, and per-channel tables: ``flatfield``, ``pixel_mask``), ``image`` (one image
per channel in ``data``) or ``end``. Arrays are RFC 8746 multi-dimensional arrays
(tag 40: ``[dimensions, elements]``, row-major; tag 1040 column-major) whose elements
are a typed array (tags 64-87: the tag says element type, size and byte order), whose
byte string may be compressed (Dectris tag 56500: ``[algorithm, element size,
compressed bytes]``, algorithm ``bslz4`` or ``lz4``).

This module maps tags to numpy dtypes (both ways) and writes the three messages, for the
simulator (:mod:`arroyo.simulate`) and for tests; :mod:`arroyo.parsers.stream2` reads them.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from arroyo._optional import require
from arroyo.errors import DecodeError, EncodeError
from arroyo.formats.compression import compress

SELF_DESCRIBE = 55799
MULTI_DIM = 40
MULTI_DIM_COLUMN_MAJOR = 1040
COMPRESSED = 56500
TYPED_ARRAYS = range(64, 88)

_UNSUPPORTED = {76: "reserved", 83: "float128 big-endian", 87: "float128 little-endian"}


def dtype_of_tag(tag: int) -> str:
    """numpy ``dtype.str`` of an RFC 8746 typed array tag (64-87). DecodeError for tags
    numpy has no portable type for (76 reserved, 83/87 float128)."""
    if tag not in TYPED_ARRAYS or tag in _UNSUPPORTED:
        raise DecodeError(
            f"typed array tag {tag} ({_UNSUPPORTED.get(tag, 'not 64-87')}) unsupported"
        )
    bits = tag - 64
    is_float, signed, little, size_code = bits >> 4 & 1, bits >> 3 & 1, bits >> 2 & 1, bits & 3
    if is_float:
        kind, size = "f", 2 << size_code
    else:
        kind, size = ("i" if signed else "u"), 1 << size_code
    order = "|" if size == 1 else ("<" if little else ">")
    return f"{order}{kind}{size}"


def tag_of_dtype(dtype: Any) -> int:
    """The RFC 8746 typed array tag of a numpy dtype (``uint16`` little-endian: 69).
    EncodeError for dtypes without one (bool, complex, structured...)."""
    np = require("numpy", "numpy", "Writing stream v2 arrays")
    dt = np.dtype(dtype)
    if (
        dt.kind not in "uif"
        or dt.itemsize not in (1, 2, 4, 8)
        or (dt.kind == "f" and dt.itemsize == 1)
    ):
        raise EncodeError(f"stream v2 has no typed array for dtype {dt}")
    size_code = {1: 0, 2: 1, 4: 2, 8: 3}[dt.itemsize]
    if dt.kind == "f":
        size_code -= 1
    # One-byte types have no byte order: 64 (uint8) and 72 (sint8); 68 is "uint8 clamped".
    little = dt.itemsize > 1 and (dt.byteorder == "<" or (dt.byteorder == "=" and np.little_endian))
    tag: int = 64 + ((dt.kind == "f") << 4) + ((dt.kind == "i") << 3) + (little << 2) + size_code
    return tag


def multi_dim(array: Any, compression: str | None = None) -> Any:
    """``array`` as tag 40 (``[dimensions, typed array]``), its bytes compressed with
    ``compression`` (``bslz4``, ``lz4``) inside tag 56500, or raw (None/``none``)."""
    np = require("numpy", "numpy", "Writing stream v2 arrays")
    cbor2 = require("cbor2", "stream2", "Writing stream v2 messages")
    array = np.ascontiguousarray(array)
    raw = array.tobytes()
    content: Any = raw
    if compression not in (None, "none"):
        content = cbor2.CBORTag(
            COMPRESSED,
            [compression, array.itemsize, compress(raw, str(compression), array.itemsize)],
        )
    typed = cbor2.CBORTag(tag_of_dtype(array.dtype), content)
    return cbor2.CBORTag(MULTI_DIM, [list(array.shape), typed])


def rational(nanoseconds: int) -> list[int]:
    """A time in nanoseconds as stream v2 writes times: ``[numerator, denominator]`` seconds."""
    return [int(nanoseconds), 1_000_000_000]


def _dumps(message: dict[str, Any]) -> bytes:
    cbor2 = require("cbor2", "stream2", "Writing stream v2 messages")
    data: bytes = cbor2.dumps(cbor2.CBORTag(SELF_DESCRIBE, message))
    return data


def start_message(
    *,
    series_id: int,
    series_unique_id: str,
    number_of_images: int,
    image_shape: tuple[int, int],
    image_dtype: str = "uint16",
    channels: tuple[str, ...] = ("threshold_1",),
    compression: str | None = None,
    tables: bool = True,
    **fields: Any,
) -> bytes:
    """A ``start`` message with the detector settings a simulated EIGER2 reports.

    ``tables``: send a flatfield (float32, all ones) and a pixel mask (uint32, zeros) per
    channel, compressed like the images, and a countrate correction table. ``fields``
    override or add settings.
    """
    np = require("numpy", "numpy", "Writing stream v2 messages")
    height, width = image_shape
    message: dict[str, Any] = {
        "type": "start",
        "series_id": series_id,
        "series_unique_id": series_unique_id,
        "arm_date": datetime.datetime.now(datetime.UTC),
        "beam_center_x": width / 2,
        "beam_center_y": height / 2,
        "channels": list(channels),
        "count_time": 0.001,
        "countrate_correction_enabled": tables,
        "detector_description": "Arroyo simulated EIGER2",
        "detector_serial_number": "SIM-0001",
        "detector_translation": [0.0, 0.0, 0.1],
        "flatfield_enabled": tables,
        "frame_time": 0.001,
        "goniometer": {},
        "image_dtype": str(np.dtype(image_dtype).name),
        "image_size_x": width,
        "image_size_y": height,
        "incident_energy": 12_400.0,
        "incident_wavelength": 1.0,
        "number_of_images": number_of_images,
        "pixel_mask_enabled": tables,
        "pixel_size_x": 75e-6,
        "pixel_size_y": 75e-6,
        "saturation_value": int(np.iinfo(np.dtype(image_dtype)).max)
        if np.dtype(image_dtype).kind in "ui"
        else 0,
        "sensor_material": "Si",
        "sensor_thickness": 450e-6,
        "threshold_energy": {channel: 6_200.0 for channel in channels},
        "user_data": {},
        "virtual_pixel_interpolation_enabled": False,
    }
    if tables:
        ones = np.ones(image_shape, dtype="<f4")
        zeros = np.zeros(image_shape, dtype="<u4")
        message["flatfield"] = {c: multi_dim(ones, compression) for c in channels}
        message["pixel_mask"] = {c: multi_dim(zeros, compression) for c in channels}
        table = np.arange(1024, dtype="<u4")
        message["countrate_correction_lookup_table"] = multi_dim(table)
    message.update(fields)
    return _dumps(message)


def image_message(
    *,
    series_id: int,
    series_unique_id: str,
    image_id: int,
    data: Mapping[str, Any],
    compression: str | None = None,
    start_ns: int = 0,
    stop_ns: int = 0,
    **fields: Any,
) -> bytes:
    """An ``image`` message: ``data`` maps each channel to its image (a numpy array)."""
    message: dict[str, Any] = {
        "type": "image",
        "series_id": series_id,
        "series_unique_id": series_unique_id,
        "image_id": image_id,
        "real_time": rational(stop_ns - start_ns),
        "start_time": rational(start_ns),
        "stop_time": rational(stop_ns),
        "user_data": {},
        "data": {channel: multi_dim(array, compression) for channel, array in data.items()},
    }
    message.update(fields)
    return _dumps(message)


def end_message(*, series_id: int, series_unique_id: str, **fields: Any) -> bytes:
    """An ``end`` message."""
    return _dumps(
        {"type": "end", "series_id": series_id, "series_unique_id": series_unique_id, **fields}
    )
