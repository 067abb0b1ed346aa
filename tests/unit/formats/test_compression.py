"""Compressed frames (bslz4, lz4 with HDF5 framing) and arrays inside metadata (no broker).

Decompression is Dectris' own ``dectris-compression``; what :func:`compress` writes is
checked against it directly, and against bitshuffle's own reader.
"""

from __future__ import annotations

import struct

import bitshuffle
import numpy as np
import pytest
from dectris.compression import decompress as dectris_decompress

from arroyo import ArrayInfo, DecodeError, EncodeError, Event
from arroyo.formats import arrays
from arroyo.formats.compression import compress, decompress, uncompressed_size

DTYPES = ["|u1", "<u2", "<u4", "<i8", "<f4", ">u2"]


@pytest.mark.parametrize("algorithm", ["bslz4", "lz4"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_what_compress_writes_dectris_reads(algorithm: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    original = rng.integers(0, 100, size=(123, 77)).astype(dtype)
    packed = compress(original.tobytes(), algorithm, original.itemsize)
    assert uncompressed_size(packed) == original.nbytes
    assert dectris_decompress(packed, algorithm, elem_size=original.itemsize) == original.tobytes()
    assert decompress(packed, algorithm, original.itemsize, original.nbytes) == original.tobytes()


def test_bslz4_is_bitshuffles_own_stream_behind_the_hdf5_header() -> None:
    original = np.arange(5000, dtype="<u2")
    packed = compress(original.tobytes(), "bslz4", 2)
    size, block = struct.unpack(">QI", packed[:12])
    assert (size, block) == (10000, 8192)
    body = np.frombuffer(packed[12:], dtype=np.uint8)
    assert np.array_equal(
        bitshuffle.decompress_lz4(body, original.shape, original.dtype, 4096), original
    )


def test_incompressible_lz4_blocks_are_stored_as_they_are() -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=200_000, dtype=np.uint8).tobytes()
    packed = compress(noise, "lz4", 1)
    assert len(packed) <= len(noise) + 12 + 4 * 4  # header + one size per block
    assert decompress(packed, "lz4", 1) == noise


def test_a_header_announcing_another_size_is_refused_before_decompressing() -> None:
    packed = compress(bytes(64), "bslz4", 2)
    forged = struct.pack(">Q", 1 << 40) + packed[8:]
    with pytest.raises(
        DecodeError, match="announces 1099511627776 uncompressed bytes, expected 64"
    ):
        decompress(forged, "bslz4", 2, 64)


@pytest.mark.parametrize(
    ("data", "algorithm", "reason"),
    [
        (b"\x00" * 5, "bslz4", "shorter than its 12-byte header"),
        (
            struct.pack(">QI", 64, 8192) + b"junk",
            "bslz4",
            "cannot decompress bslz4 data of 16 bytes",
        ),
        (struct.pack(">QI", 64, 8192), "zip", "unknown compression 'zip'"),
    ],
)
def test_bad_compressed_data_is_a_decode_error(data: bytes, algorithm: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decompress(data, algorithm, 2)


def test_compress_refuses_what_it_cannot_write() -> None:
    with pytest.raises(EncodeError, match="cannot compress with 'bszstd'"):
        compress(bytes(8), "bszstd", 2)
    with pytest.raises(EncodeError, match="cannot compress 7 bytes in elements of 2 bytes"):
        compress(bytes(7), "lz4", 2)


def test_to_array_decompresses_a_compressed_payload() -> None:
    original = np.arange(40, dtype=">u4").reshape(5, 8)
    event = Event(
        payload=compress(original.tobytes(), "bslz4", 4),
        array=ArrayInfo(">u4", (5, 8), "bslz4"),
    )
    out = event.to_array()
    assert out.dtype == original.dtype and np.array_equal(out, original)
    assert not out.flags.writeable


def test_to_array_says_which_event_did_not_decompress() -> None:
    event = Event(payload=b"\x00" * 20, array=ArrayInfo("<u2", (4, 4), "lz4"), id="e1")
    with pytest.raises(DecodeError, match="event e1: lz4 data announces 0 uncompressed bytes"):
        event.to_array()


def test_array_info_as_an_avro_record() -> None:
    info = ArrayInfo("<u2", (2, 3), "bslz4")
    assert info.to_record() == {"dtype": "<u2", "shape": [2, 3], "compression": "bslz4"}
    assert ArrayInfo.from_record(info.to_record()) == info
    assert ArrayInfo.from_record({"dtype": "<u2", "shape": [2, 3]}) == ArrayInfo("<u2", (2, 3))


def test_array_values_round_trip_raw_and_compressed() -> None:
    original = np.linspace(0, 1, 12, dtype="<f4").reshape(3, 4)
    raw = arrays.from_numpy(original)
    assert raw == {"dtype": "<f4", "shape": [3, 4], "data": original.tobytes()}
    assert np.array_equal(arrays.to_array(raw), original)
    packed = arrays.array_value("<f4", (3, 4), compress(original.tobytes(), "lz4", 4), "lz4")
    assert arrays.is_array_value(packed) and np.array_equal(arrays.to_array(packed), original)
    with pytest.raises(
        DecodeError, match="flatfield: 8 bytes, but dtype <f4 and shape \\[3, 4\\] need 48"
    ):
        arrays.to_array({"dtype": "<f4", "shape": [3, 4], "data": bytes(8)}, "flatfield")
    with pytest.raises(DecodeError, match="mask: not an array value"):
        arrays.to_array({"dtype": "<f4"}, "mask")
