"""Rows against a reference that is not the raw loop itself: how far a path can go.

- The ceilings of a check: the raw loop of a path again, checking each value before it
  forwards it, once as a peer does by hand with fastavro alone
  (:class:`bench.avro_check.AvroCheck`) and once with ``arroyo.decode``, Arroyo's
  default check (framing, guard, fastavro, the Event). Each checks one batch, then
  waits for its delivery reports (``flush``) before it reads the next.
- The batch loop (Kafka, :mod:`bench.batch_loop`): Arroyo's check and headers with the
  batch as the unit of confirmation and commit, one batch confirmed while the next is
  read: what a runtime without per-message bookkeeping could reach.
- The limit of a broker (Kafka's Java producer alone, ``bench/java_producer.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from bench.common import Measurement, Row, size_label

CHECKS = {"fastavro": "raw + fastavro check", "arroyo": "raw + arroyo.decode"}
"""The checks a raw loop can make (see :func:`checker`), with the label of each in a row."""


def checker(check: str) -> Callable[[bytes], object] | None:
    """What a raw loop calls on each value for ``check`` (a key of :data:`CHECKS`; ``""``:
    None, nothing). The call raises when the value does not pass."""
    if check == "fastavro":
        from bench.avro_check import AvroCheck

        return AvroCheck()
    if check == "arroyo":
        from arroyo import decode

        return decode
    if check:
        raise ValueError(f"unknown check {check!r}")
    return None


def ceiling_path(path: str) -> str:
    """The name of the ceiling rows of ``path`` (e.g. ``Kafka -> Kafka at-least-once``)."""
    return f"{path} vs a raw loop checking each value"


def reference_row(
    path: str,
    size: int,
    arroyo: Measurement,
    other: Measurement,
    label: str,
    ratio: tuple[str, Measurement, Measurement],
) -> Row:
    """Arroyo against the reference ``other`` (labelled ``label``). The note gives
    ``ratio``: its name and the rate of its first measurement over its second (the loop
    that checks over the raw loop: the ceiling of that check; the raw loop over the
    Java producer)."""
    name, over, under = ratio
    note = ""
    if over.msgs_per_s and under.msgs_per_s:
        note = f"{name}: {over.msgs_per_s / under.msgs_per_s:.2f}"
    return Row(path, size_label(size), arroyo, other, label, note=note)


def ceiling_rows(
    path: str, size: int, arroyo: Measurement, raw: Measurement, loops: list[Measurement]
) -> list[Row]:
    """The ceiling rows of ``path``: Arroyo against each checking loop of ``loops`` (one
    per :data:`CHECKS`, in its order)."""
    return [
        reference_row(
            ceiling_path(path), size, arroyo, loop, label, (f"{label} / raw loop", loop, raw)
        )
        for label, loop in zip(CHECKS.values(), loops, strict=True)
    ]


BATCH_LABEL = "batch loop + arroyo.decode"


def batch_row(
    path: str, size: int, arroyo: Measurement, raw: Measurement, loop: Measurement
) -> Row:
    """Arroyo against the batch loop (:mod:`bench.batch_loop`); the note gives that loop's
    rate over the raw loop's."""
    ratio = (f"{BATCH_LABEL} / raw loop", loop, raw)
    return reference_row(
        f"{path} vs a loop whose unit is the batch", size, arroyo, loop, BATCH_LABEL, ratio
    )
