"""Kafka -> Kafka (at-least-once, 1 KiB) with sentry-arroyo, getsentry's Kafka library.

Run by ``bench/peers.py`` in ``bench/.venv-sentry`` (``bench/venvs.py``): sentry-arroyo's
import name is ``arroyo``, so this project's directory is taken off ``sys.path`` while it
is imported. Written as its documentation writes a consumer: a ``StreamProcessor`` over a
``KafkaConsumer`` (``build_kafka_consumer_configuration``, its defaults: offsets stored
after processing and committed by the client), and a strategy chain
``RunTask(check) -> Produce(KafkaProducer, dst) -> RunTask(note) -> CommitOffsets``:
``Produce`` hands a message on only once the broker confirmed it, so an offset is
committed only after its output is confirmed. ``check`` is the same fastavro schema
check as the quixstreams peer's (``bench/avro_check.py``); the value is forwarded byte
for byte. The time runs from the first message ``check`` saw to the confirmation of the
``count``-th (``note``); the latency of a message is the same span for it alone.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from bench.avro_check import AvroCheck
from bench.common import ROOT, Timing

KAFKA = os.environ.get("ARROYO_KAFKA", "127.0.0.1:9092")


@contextmanager
def _without_this_project() -> Iterator[None]:
    """Import sentry-arroyo's ``arroyo``, not this project's (same name)."""
    saved = list(sys.path)
    here = {str(ROOT), "", "."}
    sys.path[:] = [p for p in sys.path if p not in here and os.path.abspath(p) != str(ROOT)]
    try:
        yield
    finally:
        sys.path[:] = saved


def _modules() -> dict[str, Any]:
    with _without_this_project():
        names = {
            "kafka": "arroyo.backends.kafka",
            "config": "arroyo.backends.kafka.configuration",
            "processing": "arroyo.processing",
            "strategies": "arroyo.processing.strategies",
            "types": "arroyo.types",
        }
        found = {key: importlib.import_module(name) for key, name in names.items()}
    origin = str(found["kafka"].__file__)
    assert not origin.startswith(str(ROOT / "arroyo")), f"imported this project's {origin}"
    return found


def forward(src: str, dst: str, group: str, count: int) -> Timing:
    """The StreamProcessor (see the module docstring), until ``count`` are confirmed."""
    m = _modules()
    kafka, config, strategies, types = m["kafka"], m["config"], m["strategies"], m["types"]
    consumer = kafka.KafkaConsumer(
        config.build_kafka_consumer_configuration(
            {}, group_id=group, auto_offset_reset="earliest", bootstrap_servers=[KAFKA]
        )
    )
    producer = kafka.KafkaProducer(
        config.build_kafka_producer_configuration(
            {"enable.idempotence": True}, bootstrap_servers=[KAFKA]
        )
    )
    check = AvroCheck()
    taken: dict[tuple[int, ...], float] = {}
    latencies: list[float] = []
    span = [0.0, 0.0]
    processor: list[Any] = []

    def key(message: Any) -> tuple[int, ...]:
        return tuple(message.committable.values())

    def checked(message: Any) -> Any:
        now = time.monotonic()
        span[0] = span[0] or now
        taken[key(message)] = now
        check(message.payload.value)
        return message.payload

    def note(message: Any) -> Any:
        now = time.monotonic()
        began = taken.pop(key(message), None)
        if began is not None and len(latencies) < count:
            latencies.append(now - began)
            span[1] = now
            if len(latencies) == count:
                processor[0].signal_shutdown()
        return message.payload

    class Factory(strategies.ProcessingStrategyFactory):  # type: ignore[misc,name-defined]
        def create_with_partitions(self, commit: Any, partitions: Mapping[Any, int]) -> Any:
            return strategies.RunTask(
                checked,
                strategies.Produce(
                    producer,
                    types.Topic(dst),
                    strategies.RunTask(note, strategies.CommitOffsets(commit)),
                ),
            )

    processor.append(m["processing"].StreamProcessor(consumer, types.Topic(src), Factory()))
    try:
        processor[0].run()
    finally:
        producer.close().result()
    if len(latencies) < count:
        raise RuntimeError(f"sentry-arroyo stopped after {len(latencies)} of {count} messages")
    return Timing(count, span[1] - span[0], latencies)
