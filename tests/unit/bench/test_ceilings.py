"""The ceilings of a check: what the raw loops call on each value, and the rows."""

from __future__ import annotations

import asyncio

import pytest

from arroyo import Event, encode
from arroyo.errors import DecodeError
from bench.batch_loop import _Confirmation
from bench.ceilings import CHECKS, batch_row, ceiling_rows, checker
from bench.common import Measurement

VALUE = encode(Event({"frame": 1}, b"\x00" * 1024, stream="bench", seq=1))


def test_no_check_calls_nothing() -> None:
    assert checker("") is None


@pytest.mark.parametrize("check", list(CHECKS))
def test_each_check_passes_an_encoded_event(check: str) -> None:
    checked = checker(check)
    assert checked is not None
    checked(VALUE)


def test_arroyo_decode_refuses_bytes_after_the_message() -> None:
    checked = checker("arroyo")
    assert checked is not None
    with pytest.raises(DecodeError, match="3 unexpected bytes after the message"):
        checked(VALUE + b"xyz")


def test_the_fastavro_check_refuses_a_value_without_the_framing() -> None:
    checked = checker("fastavro")
    assert checked is not None
    with pytest.raises(ValueError, match="single-object encoding"):
        checked(b"")


def test_an_unknown_check_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown check 'json'"):
        checker("json")


def test_each_ceiling_row_notes_its_loop_over_the_raw_loop() -> None:
    def rate(messages: int) -> Measurement:
        return Measurement(messages, 1.0, 1024)

    arroyo, raw = rate(10_000), rate(100_000)
    rows = ceiling_rows(
        "Kafka -> Kafka at-least-once", 1024, arroyo, raw, [rate(40_000), rate(20_000)]
    )
    assert [r.raw_label for r in rows] == list(CHECKS.values())
    assert [r.note for r in rows] == [
        "raw + fastavro check / raw loop: 0.40",
        "raw + arroyo.decode / raw loop: 0.20",
    ]
    assert [round(r.ratio, 2) for r in rows] == [0.25, 0.5]
    assert {r.path for r in rows} == {
        "Kafka -> Kafka at-least-once vs a raw loop checking each value"
    }
    assert {r.payload for r in rows} == {"1 KiB"}


def test_the_batch_row_sets_arroyo_against_the_batch_loop_and_notes_its_ratio() -> None:
    def rate(messages: int) -> Measurement:
        return Measurement(messages, 1.0, 1024)

    row = batch_row("Kafka -> Kafka at-least-once", 1024, rate(30_000), rate(100_000), rate(45_000))
    assert row.path == "Kafka -> Kafka at-least-once vs a loop whose unit is the batch"
    assert row.raw_label == "batch loop + arroyo.decode"
    assert row.note == "batch loop + arroyo.decode / raw loop: 0.45"
    assert round(row.ratio, 2) == 0.67


async def test_a_batch_is_confirmed_by_its_last_delivery_report_with_its_first_error() -> None:
    confirmation = _Confirmation(asyncio.get_running_loop(), 3)
    confirmation.report(None, "first")
    confirmation.report("broker down", "second")
    confirmation.report("later", "third")
    assert not confirmation.done.done()  # completed through the loop, as from a thread
    await asyncio.wait_for(confirmation.done, 5)
    assert (confirmation.left, confirmation.error) == (0, "broker down")
