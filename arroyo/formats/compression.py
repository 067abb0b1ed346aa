"""Compressed frames as Dectris detectors send them: ``bslz4``, ``bszstd``, ``lz4``.

Each is a stream with HDF5 framing (what the HDF5 bitshuffle and LZ4 filters write): an
8-byte big-endian count of uncompressed bytes, a 4-byte big-endian block size in bytes,
then the compressed blocks (``lz4``: each block preceded by its 4-byte big-endian size).

- :func:`decompress` uses Dectris' own ``dectris-compression`` (the ``stream2`` extra).
- :func:`compress` (``bslz4`` and ``lz4`` only: what the simulator and tests need) uses
  ``bitshuffle`` and ``lz4`` (the ``stream2-compress`` extra), since
  ``dectris-compression`` decompresses only.

:func:`uncompressed_size` reads the size from the header, so a reader can check it
against the frame's dtype and shape before decompressing anything.
"""

from __future__ import annotations

import struct

from arroyo._optional import require
from arroyo.errors import DecodeError, EncodeError

ALGORITHMS = ("bslz4", "bszstd", "lz4")
"""What :func:`decompress` reads (the ``compression`` of an ``arroyo.Array``)."""

COMPRESSORS = ("bslz4", "lz4")
"""What :func:`compress` writes."""

_HEADER = struct.Struct(">QI")
_LZ4_BLOCK = 1 << 16
"""Bytes per block of the ``lz4`` streams :func:`compress` writes (the HDF5 LZ4 filter's
default is 1 GiB; Dectris detectors use smaller blocks, any size reads back)."""
_BITSHUFFLE_TARGET = 8192
"""Bytes per bitshuffle block (bitshuffle's own default target)."""


def check_algorithm(algorithm: object) -> str:
    """``algorithm`` if :func:`decompress` reads it; DecodeError naming it otherwise."""
    if algorithm not in ALGORITHMS:
        raise DecodeError(f"unknown compression {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    return str(algorithm)


Buffer = bytes | bytearray | memoryview
"""Bytes to (de)compress (as :data:`arroyo.message.Buffer`; not imported from there,
which uses this module)."""


def uncompressed_size(data: Buffer) -> int:
    """The uncompressed size an HDF5-framed stream announces (its first 8 bytes)."""
    if len(data) < _HEADER.size:
        raise DecodeError(
            f"compressed data of {len(data)} bytes is shorter than its 12-byte header"
        )
    size: int = _HEADER.unpack_from(data)[0]
    return size


def decompress(data: Buffer, algorithm: str, elem_size: int, expected: int | None = None) -> bytes:
    """The uncompressed bytes of ``data``; ``elem_size``: bytes per element (bitshuffle
    needs it). With ``expected``, the header must announce that many bytes (checked
    before decompressing, so a forged header cannot make it allocate more).

    Raises DecodeError for an unknown algorithm or data that does not decompress, and
    MissingDependencyError without ``dectris-compression``.
    """
    check_algorithm(algorithm)
    announced = uncompressed_size(data)
    if expected is not None and announced != expected:
        raise DecodeError(
            f"{algorithm} data announces {announced} uncompressed bytes, expected {expected}"
        )
    module = require("dectris.compression", "stream2", f"Decompressing {algorithm} frames")
    try:
        out: bytes = module.decompress(data, algorithm, elem_size=elem_size)
    except (RuntimeError, ValueError) as exc:
        raise DecodeError(
            f"cannot decompress {algorithm} data of {len(data)} bytes: {exc}"
        ) from None
    if len(out) != announced:
        raise DecodeError(
            f"{algorithm} data announced {announced} bytes but decompressed to {len(out)}"
        )
    return out


def compress(data: Buffer, algorithm: str, elem_size: int) -> bytes:
    """``data`` compressed with ``algorithm`` (``bslz4`` or ``lz4``) in HDF5 framing,
    which :func:`decompress` (and Dectris' readers) read back.

    Raises EncodeError for another algorithm or a size that is not a whole number of
    elements, MissingDependencyError without ``bitshuffle``/``lz4``.
    """
    raw = memoryview(data).cast("B")
    if elem_size not in (1, 2, 4, 8) or raw.nbytes % elem_size:
        raise EncodeError(f"cannot compress {raw.nbytes} bytes in elements of {elem_size} bytes")
    if algorithm == "bslz4":
        np = require("numpy", "numpy", "Compressing bslz4 frames")
        bitshuffle = require("bitshuffle", "stream2-compress", "Compressing bslz4 frames")
        block = max(8, _BITSHUFFLE_TARGET // elem_size // 8 * 8)
        values = np.frombuffer(raw, dtype=f"u{elem_size}")
        body: bytes = bitshuffle.compress_lz4(values, block).tobytes()
        return _HEADER.pack(raw.nbytes, block * elem_size) + body
    if algorithm == "lz4":
        lz4_block = require("lz4.block", "stream2-compress", "Compressing lz4 frames")
        parts = [_HEADER.pack(raw.nbytes, _LZ4_BLOCK)]
        for begin in range(0, raw.nbytes, _LZ4_BLOCK):
            chunk = raw[begin : begin + _LZ4_BLOCK]
            packed = lz4_block.compress(chunk, store_size=False)
            if len(packed) >= len(chunk):  # the HDF5 LZ4 filter stores such blocks as they are
                packed = bytes(chunk)
            parts += [struct.pack(">I", len(packed)), packed]
        return b"".join(parts)
    raise EncodeError(f"cannot compress with {algorithm!r}; known: {', '.join(COMPRESSORS)}")
