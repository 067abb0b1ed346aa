"""The same Kafka -> Kafka work (at-least-once, 1 KiB) with FastStream and quixstreams.

They are installed from PyPI in a virtual environment of the benchmark's own
(``bench/.venv-peers``, made on first use; not Arroyo's dependencies), and their
variants run there; this module imports neither Arroyo nor them at the top.

- FastStream (aiokafka), as its documentation writes it: a subscriber in a consumer
  group with ``AckPolicy.ACK`` (the offset is committed after the handler returned),
  the handler publishing the value with ``broker.publish`` (which waits for the
  broker's acknowledgement); idempotent producer.
- FastStream, batched: ``batch=True`` subscriber (up to 1000 records); the handler
  publishes each with ``no_confirm=True`` and awaits all the acknowledgements together
  (``publish_batch`` is limited to one producer batch, 16 KiB); ``AckPolicy.ACK``.
- quixstreams: ``app.dataframe(topic).to_topic(out)`` with bytes (de)serializers,
  ``processing_guarantee="at-least-once"`` (its default: outputs flushed and offsets
  committed at each checkpoint), run with ``app.run(count=N)``; its time ends when
  ``run`` returns (after the final checkpoint), and it reports no latencies.
- quixstreams with the schema check (the equal-work peer): the same, with
  ``.apply(check)`` before ``to_topic``: each value is checked with fastavro against
  ``arroyo.Message`` (``bench/avro_check.py``) and forwarded byte for byte.
- sentry-arroyo, as its documentation writes it (``bench/sentry_arroyo.py``).

The environments are ``bench/venvs.py``'s: quixstreams and FastStream in
``bench/.venv-peers``, sentry-arroyo in ``bench/.venv-sentry`` (its import name
``arroyo`` is this project's); a peer that cannot be installed makes its rows say so.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import time
from dataclasses import dataclass
from typing import Any

from bench.common import Measurement, Row, Timing, best_of, run_variant, unique
from bench.venvs import PEERS as PEERS_VENV
from bench.venvs import SENTRY, Venv

KAFKA = os.environ.get("ARROYO_KAFKA", "127.0.0.1:9092")


# -- variants (in the peers' environment) ------------------------------------------------


async def faststream(src: str, dst: str, group: str, count: int, batch: bool) -> Timing:
    """FastStream: per message, or batched (see the module docstring)."""
    kafka: Any = importlib.import_module("faststream.kafka")
    ack: Any = importlib.import_module("faststream").AckPolicy.ACK
    broker = kafka.KafkaBroker(KAFKA, enable_idempotence=True)
    latencies: list[float] = []
    began: list[float] = []
    end = [0.0]
    done = asyncio.Event()

    def note(taken: float, n: int) -> None:
        end[0] = time.monotonic()
        latencies.extend([end[0] - taken] * n)
        if len(latencies) >= count:
            done.set()

    subscribe = broker.subscriber(
        src,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=ack,
        **({"batch": True, "max_records": 1000} if batch else {}),
    )
    if batch:

        @subscribe  # type: ignore[untyped-decorator]
        async def handle_batch(bodies: list[bytes]) -> None:
            taken = time.monotonic()
            began.append(taken)
            sent = [await broker.publish(body, dst, no_confirm=True) for body in bodies]
            await asyncio.gather(*sent)  # every acknowledgement
            note(taken, len(bodies))

    else:

        @subscribe  # type: ignore[untyped-decorator]
        async def handle(body: bytes) -> None:
            taken = time.monotonic()
            began.append(taken)
            await broker.publish(body, dst)
            note(taken, 1)

    async with broker:
        await broker.start()
        await done.wait()
    return Timing(len(latencies), end[0] - min(began), latencies)


def quixstreams(src: str, dst: str, group: str, count: int, check: bool = False) -> Timing:
    """quixstreams: a passthrough StreamingDataFrame, with or without the schema check
    (see the module docstring)."""
    quix: Any = importlib.import_module("quixstreams")
    app = quix.Application(
        broker_address=KAFKA,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
    )
    source = app.topic(src, value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(dst, value_serializer="bytes", key_serializer="bytes")
    began: list[float] = []

    def first(value: Any) -> None:
        if not began:
            began.append(time.monotonic())

    frame = app.dataframe(source)
    frame = frame.update(first)
    if check:
        from bench.avro_check import AvroCheck

        frame = frame.apply(AvroCheck())
    frame.to_topic(sink)
    app.run(count=count, collect=False)
    return Timing(count, time.monotonic() - began[0], [])


# -- the rows (parent process) -----------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """One peer's row: where it runs, what it calls there, its label and its counts."""

    name: str
    venv: Venv
    module: str
    function: str
    args: dict[str, Any]
    package: str
    counts: tuple[int, int]
    """(quick, full) messages per run, at 1 KiB; quick 0: only in the full run."""
    target: float = 1.0
    """Arroyo / peer the row should reach."""

    def label(self, found: dict[str, str]) -> str:
        return f"{self.name} {found.get(self.package, '?')}"


PEERS = [
    Peer(
        "FastStream",
        PEERS_VENV,
        "peers",
        "faststream",
        {"batch": False},
        "faststream",
        (2_000, 5_000),
    ),
    Peer(
        "FastStream-batch",
        PEERS_VENV,
        "peers",
        "faststream",
        {"batch": True},
        "faststream",
        (20_000, 100_000),
    ),
    Peer(
        "quixstreams",
        PEERS_VENV,
        "peers",
        "quixstreams",
        {"check": False},
        "quixstreams",
        (20_000, 100_000),
    ),
    Peer(
        "quixstreams+fastavro check",
        PEERS_VENV,
        "peers",
        "quixstreams",
        {"check": True},
        "quixstreams",
        (20_000, 100_000),
        target=1.3,
    ),
    Peer(
        "sentry-arroyo", SENTRY, "sentry_arroyo", "forward", {}, "sentry-arroyo", (20_000, 100_000)
    ),
]


def _peer(peer: Peer, src: str, count: int, made: list[str]) -> Measurement:
    from bench.kafka_kafka import create_topics, messages_in

    dst = unique("peer")
    create_topics(dst)
    made.append(dst)
    args = {"src": src, "dst": dst, "group": unique("group"), "count": count, **peer.args}
    python = str(peer.venv.python)
    result = run_variant(peer.module, peer.function, args, 1 << 10, python=python, timeout=180)
    if not result.error and messages_in(dst) < count:
        result.error = f"{dst} holds fewer than {count} messages"
    return result


def run(quick: bool, repeat: int) -> list[Row]:
    """Arroyo's at-least-once Block against each peer, on the same pre-loaded topic."""
    from bench.kafka_kafka import delete_topics, measure_arroyo, preload

    path = "Kafka -> Kafka, at-least-once, vs peers"
    problem: dict[Venv, str | None] = {}
    found: dict[Venv, dict[str, str]] = {}
    rows = []
    for peer in PEERS:
        count = peer.counts[0] if quick else peer.counts[1]
        if not count:
            continue
        if peer.venv not in problem:
            problem[peer.venv] = peer.venv.ensure()
            found[peer.venv] = {} if problem[peer.venv] else peer.venv.versions()
        why = problem[peer.venv]
        if why is not None:
            failed = Measurement.failed(1 << 10, why)
            rows.append(Row(path, "1 KiB", failed, failed, peer.name, note=why))
            continue
        src = unique("peer-src")
        preload(src, count, 1 << 10)
        made = [src]
        try:
            ours, theirs = best_of(
                [
                    functools.partial(measure_arroyo, src, count),
                    functools.partial(_peer, peer, src, count, made),
                ],
                repeat,
            )
        finally:
            delete_topics(*made)
        rows.append(
            Row(path, "1 KiB", ours, theirs, peer.label(found[peer.venv]), target=peer.target)
        )
    return rows
