"""A frame forwarded compressed (a stream2 parser with ``decompress: false``) and written by
a publisher's ``format``: the record carries the decompressed frame, read back by the
format's own package (``streaming_data_types.deserialise_ad00``; bluesky-kafka's
``msgpack.loads`` with msgpack-numpy, as its consumer reads) equal to the original."""

from __future__ import annotations

from typing import Any

import pytest

from arroyo import ArrayInfo, Event, Start
from arroyo.formats import make_format
from arroyo.formats.compression import compress

np = pytest.importorskip("numpy")
pytest.importorskip("bitshuffle")
pytest.importorskip("dectris.compression")

CASES = [
    ("bslz4", "<u2", (16, 24)),
    ("lz4", "<u4", (7, 9)),
    ("bslz4", "<i1", (33,)),
    ("lz4", "<f4", (2, 3, 5)),
]


def packed(algorithm: str, dtype: str, shape: tuple[int, ...]) -> tuple[Any, Event]:
    original = (np.arange(int(np.prod(shape))) % 97).astype(dtype).reshape(shape)
    payload = compress(original.tobytes(), algorithm, original.itemsize)
    info = ArrayInfo(dtype=dtype, shape=shape, compression=algorithm)
    event = Event({"image_id": 0}, payload=payload, array=info, stream="series-1", seq=1)
    assert len(payload) != original.nbytes or payload != original.tobytes()
    return original, event


@pytest.mark.parametrize(("algorithm", "dtype", "shape"), CASES)
def test_ess_writes_a_packed_frame_as_the_ad00_of_the_original(
    algorithm: str, dtype: str, shape: tuple[int, ...]
) -> None:
    sdt = pytest.importorskip("streaming_data_types")
    original, event = packed(algorithm, dtype, shape)
    [record] = make_format("ess").encode(event)
    image = sdt.deserialise_ad00(record.value)
    assert image.data.dtype == original.dtype
    np.testing.assert_array_equal(image.data, original)


@pytest.mark.parametrize(("algorithm", "dtype", "shape"), CASES)
def test_bluesky_kafka_writes_a_packed_frame_as_the_original_array(
    algorithm: str, dtype: str, shape: tuple[int, ...]
) -> None:
    pytest.importorskip("bluesky_kafka")  # patches msgpack with msgpack-numpy, as it reads
    import msgpack

    original, event = packed(algorithm, dtype, shape)
    fmt = make_format("bluesky-kafka")
    fmt.encode(Start({"detector": "sim"}, stream="series-1"))
    descriptor, document = (msgpack.loads(record.value) for record in fmt.encode(event))
    assert descriptor[0] == "descriptor" and document[0] == "event"
    image = document[1]["data"]["image"]
    assert image.dtype == original.dtype
    np.testing.assert_array_equal(image, original)
