"""ZeroMQ -> Kafka: a detector's PUSH socket bridged into a Kafka topic.

The sender runs in a process of its own and binds a PUSH socket; the variant connects
a PULL socket (high-water mark 16 in both variants) and produces every message to a
topic, counting it once Kafka's delivery report confirmed it.

- 4 MiB frames come from ``arroyo simulate --format arroyo`` (the simulated detector,
  Arroyo framing: a Start, the frames, a Stop);
- 1 KiB messages come from a sender that replays Events pre-encoded by
  ``arroyo.encode`` (``arroyo simulate`` makes each frame in Python and tops out near
  10,000 frames/s on this machine, below what either variant takes).

Arroyo: a Block with the ``zmq+pull`` listener, the passthrough operator and the Kafka
publisher (what ``arroyo bridge`` builds; defaults queue_size 1000, max_bytes 64 MiB).
raw: ``recv()``, ``produce`` with a delivery callback, ``poll(0)``; the producer's queue
bounded like the Block (1000 messages, 64 MiB), so both hold as much in memory.
Arroyo with ``check: lazy`` (the listener reads only the framing and the identity)
takes turns with them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from arroyo.testing import free_port
from bench.common import Measurement, Row, Timing, best_of, lazy_row, run_variant, unique
from bench.kafka_kafka import (
    KAFKA,
    create_topics,
    delete_topics,
    messages_in,
    producer_settings,
    raw_producer_config,
)

HWM = 16
"""Socket high-water marks (the ZeroMQ connectors' default)."""

RSS_TARGET_MB = 400
"""Bridging 4 MiB frames, Arroyo's peak RSS should stay under this (queue_size 1000,
max_bytes 64 MiB: the Block's defaults)."""

FRAME_SHAPE = (1024, 2048)
"""uint16: 4 MiB frames."""


async def arroyo(port: int, topic: str, count: int, lazy: bool = False) -> Timing:
    """A Block: zmq+pull listener -> Passthrough -> Kafka publisher (``lazy``: the
    listener reads each message as ``check: lazy`` does, else in full)."""
    from arroyo.brokers import open_listener, open_publisher
    from arroyo.runtime import Block
    from bench.harness import block_parser, measure_block

    listener = open_listener(f"zmq+pull://127.0.0.1:{port}", {"rcvhwm": HWM}, block_parser(lazy))
    publisher = open_publisher(f"kafka://{KAFKA}/{topic}", producer_settings())
    block = Block(listener, None, [publisher], name="bridge")
    return await measure_block(block, count)


def raw(port: int, topic: str, count: int) -> Timing:
    """The hand-written loop (see the module docstring)."""
    import zmq
    from confluent_kafka import KafkaException, Producer

    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, HWM)
    pull.connect(f"tcp://127.0.0.1:{port}")
    bounded = {"queue.buffering.max.messages": 1000, "queue.buffering.max.kbytes": 65536}
    producer = Producer(raw_producer_config(**bounded))
    latencies: list[float] = []
    errors: list[Any] = []
    last = [0.0]

    def confirmed(taken: float) -> Callable[[Any, Any], None]:
        def on_delivery(error: Any, msg: Any) -> None:
            if error is not None:
                errors.append(error)
            last[0] = time.monotonic()
            latencies.append(last[0] - taken)

        return on_delivery

    began = 0.0
    for _ in range(count):
        data = pull.recv()
        taken = time.monotonic()
        began = began or taken
        while True:
            try:
                producer.produce(topic, data, on_delivery=confirmed(taken))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush()
    if errors:
        raise KafkaException(errors[0])
    pull.close(linger=0)
    context.term()
    return Timing(count, last[0] - began, latencies)


# -- the sender --------------------------------------------------------------------------


def _sender(port: int, count: int, size: int) -> subprocess.Popen[bytes]:
    """Start the sender bound to ``port``; it sends ``count`` messages in all."""
    if size >= 1 << 20:
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
            "arroyo",
        ]
    else:
        command = [sys.executable, "-m", "bench.zmq_kafka", str(port), str(count), str(size)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def replay(port: int, count: int, size: int) -> None:
    """Send ``count`` pre-encoded Events on a bound PUSH socket, as fast as it takes them."""
    import zmq

    from bench.kafka_kafka import events

    messages = events(count, size)
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, HWM)
    push.bind(f"tcp://127.0.0.1:{port}")
    for data in messages:
        push.send(data)
    push.close(linger=-1)
    context.term()


def _variant(
    function: str, count: int, size: int, made: list[str], lazy: bool = False
) -> Callable[[], Measurement]:
    def run() -> Measurement:
        topic = unique(f"zk-{function}{'-lazy' if lazy else ''}")
        create_topics(topic)
        made.append(topic)
        port = free_port()
        sender = _sender(port, count, size)
        args: dict[str, Any] = {"port": port, "topic": topic, "count": count}
        if lazy:
            args["lazy"] = True
        try:
            result = run_variant("zmq_kafka", function, args, size)
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


COUNTS = {  # (quick, full) messages per run
    1 << 10: (20_000, 100_000),
    4 << 20: (66, 514),  # 64 frames (256 MiB), 512 frames (2 GiB), plus Start and Stop
}


def run(quick: bool, repeat: int) -> list[Row]:
    """The bridge rows at 1 KiB and 4 MiB."""
    rows = []
    for turn, (size, counts) in enumerate(COUNTS.items()):
        count = counts[0] if quick else counts[1]
        made: list[str] = []
        try:
            a, b, lazy = best_of(
                [
                    _variant("arroyo", count, size, made),
                    _variant("raw", count, size, made),
                    _variant("arroyo", count, size, made, lazy=True),
                ],
                repeat,
                turn,
            )
        finally:
            delete_topics(*made)
        volume = count * size / (1 << 30)
        note = ""
        if size >= 1 << 20:
            verdict = "met" if a.peak_rss_mb < RSS_TARGET_MB else "MISSED"
            note = (
                f"{count} messages, {volume:.2f} GiB; Arroyo's peak RSS "
                f"{a.peak_rss_mb:.0f} MB (target < {RSS_TARGET_MB} MB: {verdict})"
            )
        label = "4 MiB" if size == 4 << 20 else "1 KiB"
        rows.append(
            Row(
                "ZMQ -> Kafka bridge",
                label,
                a,
                b,
                note=note,
                target=0.9 if size >= 1 << 20 else 0.4,
            )
        )
        rows.append(lazy_row("ZMQ -> Kafka bridge", label, lazy, b))
    return rows


if __name__ == "__main__":
    replay(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
