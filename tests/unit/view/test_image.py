"""Frames reduced for the page: the maximum of each block, in a type JavaScript reads."""

from __future__ import annotations

import numpy as np
import pytest

from arroyo.view.image import factor_for, picture


def values(made, dtype: str) -> np.ndarray:
    return np.frombuffer(made.data, dtype=dtype).reshape(made.height, made.width)


def test_a_frame_that_fits_is_sent_as_it_is() -> None:
    frame = np.arange(12, dtype="<u2").reshape(3, 4)
    made = picture(frame, 16)
    assert (made.width, made.height, made.factor, made.dtype) == (4, 3, 1, "uint16")
    assert (values(made, "<u2") == frame).all()
    assert made.header()["shape"] == [3, 4]


def test_a_large_frame_keeps_the_maximum_of_each_block_also_at_ragged_edges() -> None:
    frame = np.zeros((10, 7), dtype="<u2")
    frame[0, 0] = 5  # block (0, 0)
    frame[9, 6] = 9  # the ragged last block (rows 8-9, cols 6)
    frame[4, 3] = 7  # block (2, 1)
    made = picture(frame, 4)
    assert made.factor == factor_for((10, 7), 4) == 3
    got = values(made, "<u2")
    assert got.shape == (4, 3)
    assert got[0, 0] == 5 and got[3, 2] == 9 and got[1, 1] == 7
    assert got.sum() == 5 + 9 + 7  # a single hot pixel is never averaged away


@pytest.mark.parametrize(
    ("dtype", "sent"),
    [
        (">u2", "uint16"),
        ("<i4", "int32"),
        ("bool", "uint8"),
        ("<i8", "float64"),
        ("<f2", "float32"),
        ("<c8", "float32"),
        (">f8", "float64"),
    ],
)
def test_values_are_sent_little_endian_in_a_javascript_type(dtype: str, sent: str) -> None:
    frame = (np.arange(6).reshape(2, 3) % 2).astype(dtype)
    made = picture(frame, 64)
    assert made.dtype == sent
    little = {"uint16": "<u2", "int32": "<i4", "uint8": "u1", "float64": "<f8", "float32": "<f4"}
    assert (values(made, little[sent]) == np.abs(frame).astype(little[sent])).all()


def test_a_frame_of_more_than_two_dimensions_shows_its_first_plane() -> None:
    stack = np.arange(2 * 3 * 4, dtype="<u2").reshape(2, 3, 4)
    made = picture(stack, 64)
    assert made.plane == (0,)
    assert (values(made, "<u2") == stack[0]).all()
    assert made.header()["shape"] == [2, 3, 4]


def test_a_line_is_one_row_and_an_empty_frame_is_refused() -> None:
    assert (
        picture(np.arange(5, dtype="u1"), 64).height,
        picture(np.arange(5, dtype="u1"), 64).width,
    ) == (1, 5)
    with pytest.raises(ValueError, match="no pixels"):
        picture(np.zeros((0, 4)), 64)


def test_the_block_maximum_is_that_of_every_block_whatever_the_shape() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        rows, cols, size = (int(n) for n in rng.integers(1, 90, 3))
        frame = rng.integers(0, 60_000, (rows, cols)).astype("<u2")
        made = picture(frame, max(16, size))
        f = made.factor
        expected = np.array(
            [
                [frame[r : r + f, c : c + f].max() for c in range(0, cols, f)]
                for r in range(0, rows, f)
            ]
        )
        assert (values(made, "<u2") == expected).all(), (rows, cols, f)
