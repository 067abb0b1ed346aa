"""Dectris stream v2 -> Kafka: a simulated EIGER2 bridged into a Kafka topic (opt-in path:
``python -m bench --only stream2_kafka``).

The sender is ``arroyo simulate --format stream2 --compression none`` in a process of
its own (1024 x 2048 uint16 images: 4 MiB frames, CBOR start / image / end messages on
a bound PUSH socket, high-water mark 16).

Arroyo: a Block with the ``zmq+pull`` listener and the ``stream2`` parser (each CBOR
image becomes an Event with its array), the passthrough operator and the Kafka publisher
(Arroyo framing). raw: the hand-written loop of :mod:`bench.zmq_kafka` (``recv()``, then
``produce`` the CBOR bytes as they are, with a delivery callback), which parses nothing:
the row says what reading the detector's format costs on top of moving its bytes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from arroyo.testing import free_port
from bench.common import Measurement, Row, Timing, best_of, run_variant, unique
from bench.kafka_kafka import KAFKA, create_topics, delete_topics, messages_in, producer_settings
from bench.zmq_kafka import FRAME_SHAPE, HWM
from bench.zmq_kafka import raw as raw_loop

SIZE = FRAME_SHAPE[0] * FRAME_SHAPE[1] * 2
COUNTS = (66, 514)
"""Messages per run (quick, full): 64 or 512 images, plus start and end."""


async def arroyo(port: int, topic: str, count: int) -> Timing:
    """A Block: zmq+pull listener (parser stream2) -> Passthrough -> Kafka publisher."""
    from arroyo.brokers import open_listener, open_publisher
    from arroyo.parsers import make_parser
    from arroyo.runtime import Block
    from bench.harness import measure_block

    listener = open_listener(
        f"zmq+pull://127.0.0.1:{port}", {"rcvhwm": HWM}, make_parser("stream2")
    )
    publisher = open_publisher(f"kafka://{KAFKA}/{topic}", producer_settings())
    block = Block(listener, None, [publisher], name="eiger")
    return await measure_block(block, count)


def raw(port: int, topic: str, count: int) -> Timing:
    """The raw loop of :mod:`bench.zmq_kafka`: the CBOR bytes produced as they came."""
    return raw_loop(port, topic, count)


def _sender(port: int, count: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "arroyo",
        "simulate",
        f"zmq+push://127.0.0.1:{port}?bind=true",
        "--frames",
        str(count - 2),
        "--shape",
        "x".join(map(str, FRAME_SHAPE)),
        "--format",
        "stream2",
        "--compression",
        "none",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def _variant(function: str, count: int, made: list[str]) -> Callable[[], Measurement]:
    def run() -> Measurement:
        topic = unique(f"s2k-{function}")
        create_topics(topic)
        made.append(topic)
        port = free_port()
        sender = _sender(port, count)
        try:
            result = run_variant(
                "stream2_kafka", function, {"port": port, "topic": topic, "count": count}, SIZE
            )
        finally:
            try:
                sender.wait(30)
            except subprocess.TimeoutExpired:
                sender.kill()
                sender.wait()
        if not result.error and messages_in(topic) < count:
            result.error = f"{topic} holds fewer than {count} messages"
        delete_topics(topic)
        return result

    return run


def run(quick: bool, repeat: int) -> list[Row]:
    """The stream2 bridge row at 4 MiB."""
    count = COUNTS[0] if quick else COUNTS[1]
    made: list[str] = []
    try:
        a, b = best_of([_variant("arroyo", count, made), _variant("raw", count, made)], repeat)
    finally:
        delete_topics(*made)
    note = f"{count} messages, {count * SIZE / (1 << 30):.2f} GiB of uncompressed images"
    return [Row("stream2 (EIGER2) -> Kafka bridge", "4 MiB", a, b, note=note, target=0.9)]
